"""``MODEL_CARD.md``: what a reader of an exported model needs to judge it, in Markdown.

Written beside the model (``model.safetensors``, ``model.json``): by the pretrain step (what it
was trained on, how and where: the training corpus, its label statistics and vocabulary, the
annotators that made the labels with their weights' SHA-256, the settings, the hardware) and
again, completed with the transfer results (each metric's mean and spread over the benchmark's
folds), by the step that collects a model's transfer results. The annotators come from the labels'
``summary.json``, which the features step carries along as ``labels.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from mmvideos.data import storage
from mmvideos.data.atomic import write_text

CARD = "MODEL_CARD.md"
#: The labels' summary as the features step carries it to the pretrain step.
LABELS_SUMMARY = "labels.json"
#: Settings of the pretrain summary shown in the card, in this order.
_SETTINGS = ("model", "width_mult", "epochs", "batch_size", "lr", "lr_decay", "seed", "world_size", "num_classes")


def json_at(folder: str | Path, name: str) -> dict:
    """The JSON file ``name`` of ``folder`` (local or gs://), ``{}`` where there is none."""
    path = storage.join(str(folder), name)
    return json.loads(storage.read_bytes(path)) if storage.exists(path) else {}


def model_card(model_dir: str | Path, features_dir: str | Path | None = None,
               transfers: list[str | Path] = ()) -> str:
    """The card of the exported model in ``model_dir`` (module docstring) as Markdown."""
    card, summary = json_at(model_dir, "model.json"), json_at(model_dir, "summary.json")
    labels = json_at(features_dir or model_dir, LABELS_SUMMARY)
    vocabulary = pd.read_parquet(Path(model_dir) / "vocabulary.parquet")
    lines = [f"# Model card: {card.get('arch')} x{card.get('width_mult')}", "",
             "An audio encoder pretrained on machine-labelled video clips (cross-modal supervision: the labels "
             "come from an image classifier on the frames and an audio tagger on the sound). Embed audio with "
             "`mmvideos embed AUDIO --model THIS_FOLDER` or `mmvideos.load_encoder(path)`; HEAR 2021 API: "
             "`mmvideos.hear`.", "",
             "## Weights", "",
             f"- `model.safetensors`, SHA-256 `{card.get('sha256', '?')}`; epoch {card.get('epoch')}",
             f"- input: 1-s log-mel frames of 16 kHz audio, preset `{card.get('feature_preset')}` (100 x 64); "
             "output: one 128-d embedding per second", "",
             "## Training corpus", "",
             f"- {summary.get('train_clips', '?')} training clips"
             + (f" ({labels['clips']} labelled clips in all)" if "clips" in labels else ""),
             f"- vocabulary: {len(vocabulary)} labels ({', '.join(f'{n} {m}' for m, n in vocabulary['modality'].value_counts().sort_index().items())})"]
    if labels:
        lines.append(f"- labels per clip: {labels.get('mean_labels_per_clip', 0):.1f} "
                     f"({labels.get('mean_visual_labels_per_clip', 0):.1f} visual + "
                     f"{labels.get('mean_audio_labels_per_clip', 0):.1f} audio); vocabulary used: "
                     f"{labels.get('utilisation', 0):.1%} of {labels.get('vocabulary_total', '?')} classes")
    top = vocabulary.sort_values("count", ascending=False, kind="stable").head(10)
    lines.append("- most frequent labels: " + ", ".join(f"{n} ({c})" for n, c in zip(top["name"], top["count"])))
    lines += ["", "## Annotators", ""]
    annotators = [(modality, a) for modality, items in (labels.get("annotators") or {}).items() for a in items]
    lines += [f"- {modality}: {a.get('annotator')} ({a.get('annotator_version')}), weights SHA-256 "
              f"`{a.get('weights_sha256')}`" for modality, a in annotators] or ["- not recorded"]
    lines += ["", "## Settings and hardware", "",
              "| setting | value |", "|---|---|",
              *(f"| {key} | {summary[key]} |" for key in _SETTINGS if key in summary),
              f"| hardware | {summary.get('hardware', '?')} ({summary.get('device', '?')}, {summary.get('gpus', 0)} GPUs) |",
              "", "## Final training figures", ""]
    final = summary.get("final") or {}
    lines.append(f"- loss {final.get('loss', float('nan')):.4f}; "
                 + (f"validation not meaningful: {summary['val_note']}" if summary.get("val_note") else
                    f"val top-1 {final.get('val_top1', float('nan')):.1%}, val mAP {final.get('val_map', float('nan')):.1%}"))
    lines += ["", "## Transfer results", ""] + _transfer_lines(transfers)
    return "\n".join(lines) + "\n"


def _transfer_lines(transfers: list[str | Path]) -> list[str]:
    """Per benchmark and row: each metric's mean over the folds, with its standard deviation."""
    if not transfers:
        return ["- not evaluated in this card's step: the run's collect step writes the card again with them "
                "(`mmvideos open`: the results page)"]
    lines = ["| benchmark | features | clips | folds | Top-1 % | Top-5 % | mAP % |", "|---|---|---|---|---|---|---|"]
    for folder in transfers:
        metrics = json_at(folder, "metrics.json")
        for row in metrics.get("rows", []):
            cells = []
            for metric in ("top1", "top5", "map"):
                sd = row.get("fold_sd", {}).get(metric)  # over the folds (uncertainty.spread)
                spread = f" ± {100 * sd:.1f}" if sd is not None else ""
                cells.append(f"{100 * row[metric]:.1f}{spread}" if row.get(metric) is not None else "–")
            lines.append(f"| {metrics.get('benchmark')} | {row['model']} | {metrics.get('clips', '?')} | "
                         f"{len(row.get('splits', {}))} | " + " | ".join(cells) + " |")
    lines += ["", "(± is the standard deviation over the benchmark's folds; – where a metric does not apply.)"]
    return lines


def write_model_card(model_dir: str | Path, features_dir: str | Path | None = None,
                     transfers: list[str | Path] = (), target: str | Path | None = None) -> Path:
    """Write :func:`model_card` to ``target`` (default: ``MODEL_CARD.md`` in ``model_dir``); the
    labels' summary of ``features_dir`` is kept beside the model too, for the card's later rewrites."""
    labels = json_at(features_dir, LABELS_SUMMARY) if features_dir else {}
    if labels and target is None:
        write_text(json.dumps(labels, indent=2, sort_keys=True), Path(model_dir) / LABELS_SUMMARY)
    return write_text(model_card(model_dir, features_dir, transfers), target or Path(model_dir) / CARD)
