"""Validation metrics and training curves of pre-training (paper section 3: "1-best accuracy
and mean Average Precision (mAP) over a validation subset")."""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import nn

from mmvideos.data.atomic import atomic_path, write_text
from mmvideos.features.store import FeatureRecord


@torch.no_grad()
def evaluate(model: nn.Module, clips: Iterable[FeatureRecord], num_classes: int, batch_size: int = 1024,
             device: str | torch.device = "cpu", bf16: bool = False) -> dict[str, Any]:
    """Validation Top-1 and mAP on validation clips.

    A clip's scores are the sigmoid outputs averaged over all its 1-s frames; its truth is all
    its visual and audio labels. Top-1: the fraction of clips (with at least one label) whose
    top-scoring label is one of them. mAP: average precision (:func:`average_precision`, exact)
    averaged over the classes that have a positive clip.

    Args:
        model: the network (its training mode is restored afterwards).
        clips: the validation clips, e.g. ``iter_features(features_dir, split="val", limit=n)``.
        num_classes: vocabulary size.
        batch_size: 1-s frames per forward pass.
        device: where ``model`` runs.
        bf16: bfloat16 autocast (CUDA).

    Returns:
        ``{"val_clips", "val_videos", "val_loss", "val_top1", "val_map"}`` (``val_loss``: the
        training loss, sigmoid cross-entropy per 1-s frame and label, on the validation clips), or ``{"val_clips": 0, "val_note":
        ...}`` when there is no validation clip. When the set is too small or too uniform for
        the figures to mean anything (:func:`validation_note`), ``val_note`` says why: the
        figures stay in the history for the curves, and summaries print the note instead.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    scores, truth, pending, videos = [], [], [], set()
    loss = [0.0, 0]  # the training loss's sum over 1-s frames and classes, and its count

    def flush() -> None:
        mel = torch.from_numpy(np.concatenate([c.mel for c in pending])).unsqueeze(1)  # [S, 1, 100, 64]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda"):
            logits = model(mel.to(device).float()).float().cpu()  # [S, V]
        for part, clip in zip(logits.split([len(c.mel) for c in pending]), pending):
            scores.append(torch.sigmoid(part).mean(0))
            row = torch.zeros(num_classes, dtype=torch.bool)
            row[torch.from_numpy(np.concatenate([clip.visual, clip.audio]))] = True
            truth.append(row)
            loss[0] += nn.functional.binary_cross_entropy_with_logits(part, row.float().expand_as(part),
                                                                      reduction="sum").item()
            loss[1] += part.numel()
        pending.clear()

    for clip in clips:
        pending.append(clip)
        videos.add(clip.clip_id.rsplit("-", 1)[0])
        if sum(len(c.mel) for c in pending) >= batch_size:
            flush()
    if pending:
        flush()
    model.train(was_training)
    if not scores:
        return {"val_clips": 0, "val_note": "no validation clips (split == 'val'): validation skipped"}
    probs, targets = torch.stack(scores), torch.stack(truth)  # [N, V] each
    labelled = targets.any(1)
    top1 = targets[torch.arange(len(probs)), probs.argmax(1)][labelled].float().mean().item()
    classes = torch.nonzero(targets.any(0)).flatten()
    ap = torch.cat([average_precision(probs[:, chunk], targets[:, chunk]) for chunk in classes.split(1024)])
    result = {"val_clips": len(probs), "val_videos": len(videos), "val_loss": loss[0] / loss[1], "val_top1": top1,
              "val_map": ap.mean().item()}
    note = validation_note(targets, len(videos))
    return result | ({"val_note": note} if note else {})


def average_precision(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Exact average precision of each column: ``scores`` and 0/1 ``targets`` ``[N, C]`` -> ``[C]``.

    ``sum_k (R_k - R_{k-1}) P_k`` over the distinct scores, highest first (tied scores are one
    threshold), as ``sklearn.metrics.average_precision_score`` computes it; a column without a
    positive gives NaN. All columns at once: a sort and cumulative sums. (torchmetrics computes the
    same, but importing it imports its audio metrics, and so scipy.signal and librosa: seconds
    of every pretraining task's start-up.)
    """
    scores, order = scores.float().sort(dim=0, descending=True)
    hits = targets.gather(0, order).double()
    tp = hits.cumsum(0)  # [N, C] true positives at each rank
    rank = torch.arange(1, len(scores) + 1, dtype=torch.float64, device=scores.device)[:, None]
    # a threshold is the last of each run of tied scores
    last = torch.ones_like(scores, dtype=torch.bool)
    last[:-1] = scores[1:] != scores[:-1]
    tp_at = torch.where(last, tp, torch.zeros_like(tp))
    tp_before = torch.cat([torch.zeros_like(tp[:1]), tp_at.cummax(0).values[:-1]])  # at the previous threshold
    gained = torch.where(last, tp - tp_before, torch.zeros_like(tp))  # positives the threshold adds
    return ((gained * tp / rank).sum(0) / tp[-1]).float()


#: Fewer validation clips than this, and the figures are noise.
MIN_VAL_CLIPS = 30
#: Clips of one video are near copies: a figure over fewer videos measures those few videos.
MIN_VAL_VIDEOS = 5


def validation_note(targets: torch.Tensor, videos: int) -> str | None:
    """Why validation figures on these ``[N, V]`` 0/1 ``targets`` (from ``videos`` videos) mean
    nothing, or ``None`` when they do.

    Clips of one video are near copies of each other; a label carried by every validation clip
    has an average precision of 1 whatever the model scores, so mAP needs labels that some clips
    carry and others do not.
    """
    informative = int((targets.any(0) & ~targets.all(0)).sum())
    reasons = []
    if len(targets) < MIN_VAL_CLIPS:
        reasons.append(f"{len(targets)} clips (fewer than {MIN_VAL_CLIPS})")
    if videos < MIN_VAL_VIDEOS:
        reasons.append(f"{videos} video{'s' if videos != 1 else ''} (fewer than {MIN_VAL_VIDEOS})")
    if informative < 2:
        reasons.append(f"{informative} label(s) that tell clips apart")
    return ("validation set of " + ", ".join(reasons)) if reasons else None


def plot_curves(history: list[dict[str, Any]], target: str | Path) -> Path:
    """Training and validation loss, validation Top-1 / mAP and learning rate per epoch, as a PNG."""
    fig = Figure(figsize=(10, 7), layout="constrained")
    panels = [(("loss", "val_loss"), "loss (sigmoid cross-entropy)"), (("val_top1",), "validation Top-1"),
              (("val_map",), "validation mAP"), (("lr",), "learning rate")]
    note = next((h["val_note"] for h in reversed(history) if h.get("val_note")), None)
    for ax, (keys, title) in zip(fig.subplots(2, 2).flat, panels):
        measured = [k for k in keys if not (note and k.startswith("val_"))]
        if not measured:  # a set too small or uniform to measure: said, not drawn
            ax.text(0.5, 0.5, "not meaningful:\n" + note.replace(", ", "\n"), ha="center", va="center",
                    transform=ax.transAxes, wrap=True)
        for key in measured:
            points = [(h["epoch"], h[key]) for h in history if h.get(key) is not None]
            if points:
                ax.plot(*zip(*points), marker="o", label={"loss": "training", "val_loss": "validation"}.get(key))
        if len(ax.lines) > 1:
            ax.legend()
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return Path(target)


def write_curves_page(history: list[dict[str, Any]], png: str | Path, target: str | Path) -> Path:
    """A self-contained HTML page (for the Kubeflow UI): the curves PNG inlined, then a table of
    the per-epoch metrics."""
    image = base64.b64encode(Path(png).read_bytes()).decode()
    note = next((h["val_note"] for h in reversed(history) if h.get("val_note")), None)
    keys = ["epoch", "step", "loss"] + ([] if note else ["val_loss"]) + ["lr"] + ([] if note else ["val_top1", "val_map"]) \
        + ["hardware"]
    cell = lambda v: f"{v:.4g}" if isinstance(v, float) else html.escape(str(v))  # noqa: E731
    rows = "".join("<tr>" + "".join(f"<td>{cell(h.get(k, ''))}</td>" for k in keys) + "</tr>" for h in history)
    header = "".join(f"<th>{k}</th>" for k in keys)
    return write_text("<!doctype html><html><head><meta charset='utf-8'><title>pre-training curves</title></head>"
                      "<body><h1>Pre-training</h1>"
                      + (f"<p><b>No validation figures</b>: {html.escape(note)}, too little to measure "
                         "anything (ingest.val_fraction widens the split).</p>" if note else "")
                      + f"<img alt='training curves' src='data:image/png;base64,{image}'>"
                      f"<table border='1'><tr>{header}</tr>{rows}</table></body></html>\n", target)

