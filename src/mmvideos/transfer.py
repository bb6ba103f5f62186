"""Stage: transfer, a shallow classifier on frozen clip features, per benchmark (paper section 4).

For one benchmark (``esc50``, ``tut2018`` or ``audioset``, see :mod:`mmvideos.benchmarks`)
three feature sets go through the same protocol and the same classifier:

* ``pretrained``: the pre-trained network's pooled embeddings (see
  :mod:`mmvideos.benchmarks.embeddings`);
* ``random_init``: the same architecture with random weights (seeded, untrained), which shows
  how much of the result is the pre-training rather than the architecture;
* ``logmel_stats``: mean and std over time of each raw log-mel bin, which shows how much is
  learnt at all.

The classifier (paper section 4): standardised inputs (train-split mean and std), dropout
(0.3 ESC-50, 0.5 TUT and AudioSet), then a linear layer to the benchmark's classes, which is
the paper's "last layer ... alternated with the adapted class vocabulary"; ``hidden_units > 0``
inserts one ReLU hidden layer (and a second dropout) instead. Adam with lr 2e-4, batch 128,
L2 weight decay 1e-6, a fixed number of epochs, no early stopping (no tuning on the test fold).
Softmax + cross-entropy for single-label benchmarks, sigmoid + binary cross-entropy for
AudioSet. Everything is seeded, so a run is reproducible on the same device.

Output folder: ``metrics.json`` (``{"benchmark", "rows": [{"model", "top1", "top5", "map",
"auc", ...}]}``, each metric the mean over the protocol's splits), ``confusion.json`` for
single-label benchmarks (pre-trained model, summed over splits, ``{"labels", "matrix"}`` with
rows = true class, as KFP's ClassificationMetrics wants) and ``summary.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mmvideos import storage
from mmvideos.atomic import write_json
from mmvideos.benchmarks import Benchmark, read_benchmark
from mmvideos.benchmarks.embeddings import LOGMEL_STATS, embedding_extractor, extract, module_key, weights_key
from mmvideos.corpus import cache_dir as default_cache_root
from mmvideos.metrics import evaluate
from mmvideos.models import build_model
from mmvideos.training.checkpoint import load_model

log = logging.getLogger(__name__)

MODELS = ("pretrained", "random_init", "logmel_stats")


@dataclasses.dataclass(frozen=True)
class TransferConfig:
    """``params.yaml: transfer``; defaults are the paper's values where it gives them."""

    epochs: int = 100
    lr: float = 2e-4
    batch_size: int = 128
    weight_decay: float = 1e-6
    dropout_esc50: float = 0.3
    dropout_tut2018: float = 0.5
    dropout_audioset: float = 0.5
    hidden_units: int = 0        # 0: linear classifier on the features (the paper's swapped last layer)
    seed: int = 0
    device: str = "auto"         # "auto": CUDA when available

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.hidden_units < 0:
            raise ValueError(f"invalid transfer settings: {self}")

    def dropout(self, benchmark: str) -> float:
        """The dropout rate for ``benchmark``."""
        return getattr(self, f"dropout_{benchmark}")

    def torch_device(self) -> torch.device:
        """The device to run on."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


def multi_hot(labels: list[list[int]], num_classes: int) -> np.ndarray:
    """Label index lists -> ``[N, C]`` 0/1 float32."""
    out = np.zeros((len(labels), num_classes), dtype=np.float32)
    for row, indices in enumerate(labels):
        out[row, indices] = 1.0
    return out


class Classifier(nn.Module):
    """Standardise -> dropout -> linear (or -> hidden ReLU layer -> dropout -> linear)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, num_classes: int, dropout: float,
                 hidden_units: int) -> None:
        super().__init__()
        self.register_buffer("mean", mean)  # [D]
        self.register_buffer("std", std)    # [D]
        dim = mean.numel()
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        if hidden_units:
            layers += [nn.Linear(dim, hidden_units), nn.ReLU(), nn.Dropout(dropout)]
            dim = hidden_units
        layers.append(nn.Linear(dim, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, D]`` features -> ``[B, C]`` logits."""
        return self.net((x - self.mean) / self.std)


def train_classifier(x: np.ndarray, y: np.ndarray, multi_label: bool, dropout: float, cfg: TransferConfig,
                     device: torch.device) -> Classifier:
    """Fit a :class:`Classifier` on features ``x [N, D]`` and multi-hot targets ``y [N, C]``."""
    torch.manual_seed(cfg.seed)
    features = torch.from_numpy(x).to(device)
    targets = torch.from_numpy(y).to(device)
    std = features.std(0, correction=0)
    # a feature constant over the training set carries nothing; dividing by 1 leaves it at 0
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    model = Classifier(features.mean(0), std, y.shape[1], dropout, cfg.hidden_units).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss() if multi_label else nn.CrossEntropyLoss()
    classes = targets if multi_label else targets.argmax(1)  # [N, C] or [N]
    order = torch.Generator().manual_seed(cfg.seed)
    model.train()
    for _ in range(cfg.epochs):
        for batch in torch.randperm(len(x), generator=order).split(cfg.batch_size):
            batch = batch.to(device)
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(features[batch]), classes[batch]).backward()
            optimizer.step()
    return model.eval()


def predict(model: Classifier, x: np.ndarray, multi_label: bool, device: torch.device) -> np.ndarray:
    """Class probabilities ``[N, C]``: sigmoid for multi-label, softmax otherwise."""
    with torch.inference_mode():
        logits = model(torch.from_numpy(x).to(device))
        return (logits.sigmoid() if multi_label else logits.softmax(1)).cpu().numpy()


def run_protocol(bench: Benchmark, features: np.ndarray, cfg: TransferConfig,
                 device: torch.device) -> tuple[dict[str, float], dict[str, dict[str, float]], np.ndarray]:
    """Train and score on every split of the benchmark's protocol.

    Returns:
        (metrics averaged over splits, metrics per split, confusion matrix ``[C, C]`` summed over
        splits with rows = true class)
    """
    targets = multi_hot(bench.table["labels"].tolist(), len(bench.classes))  # [N, C]
    folds = bench.table["fold"].to_numpy()
    per_split, confusion = {}, np.zeros((len(bench.classes),) * 2, dtype=np.int64)
    for split in bench.protocol:
        train, test = np.isin(folds, split.train), np.isin(folds, split.test)
        if not train.any() or not test.any():
            raise ValueError(f"{bench.name}: split {split.name} has {train.sum()} training and {test.sum()} "
                             f"test clips; both must be non-empty")
        model = train_classifier(features[train], targets[train], bench.multi_label,
                                 cfg.dropout(bench.name), cfg, device)
        scores = predict(model, features[test], bench.multi_label, device)  # [n_test, C]
        per_split[split.name] = evaluate(scores, targets[test])
        if not bench.multi_label:
            np.add.at(confusion, (targets[test].argmax(1), scores.argmax(1)), 1)
    mean = {k: float(np.mean([m[k] for m in per_split.values()])) for k in next(iter(per_split.values()))}
    return mean, per_split, confusion


@contextlib.contextmanager
def _local_checkpoint(checkpoint_dir: str) -> Iterator[Path]:
    """A local folder with the checkpoint's ``model.safetensors`` and ``model.json``."""
    if not storage.is_gcs(checkpoint_dir):
        yield Path(checkpoint_dir)
        return
    with tempfile.TemporaryDirectory(prefix="mmvideos-ckpt-") as tmp:
        for name in ("model.safetensors", "model.json"):
            with storage.local_copy(storage.join(checkpoint_dir, name)) as path:
                shutil.copy(path, Path(tmp) / name)
        yield Path(tmp)


def transfer(benchmark: str, data_dir: str | Path, checkpoint_dir: str | Path, out_dir: str | Path,
             cfg: TransferConfig = TransferConfig(), progress: bool = True,
             cache_dir: str | Path | None = None) -> dict:
    """Evaluate a pre-trained checkpoint and the two baselines on one benchmark.

    Args:
        benchmark: ``esc50``, ``tut2018`` or ``audioset``.
        data_dir: the benchmark's root in its published layout (local folder or ``gs://``).
        checkpoint_dir: a pretrain output folder (``model.safetensors`` + ``model.json``).
        out_dir: where ``metrics.json``, ``confusion.json`` and ``summary.json`` go.
        cfg: classifier settings.
        progress: show progress bars.
        cache_dir: embedding cache (default ``$MMVIDEOS_CACHE/embeddings``).

    Returns:
        The summary (also ``summary.json``).
    """
    started = time.time()
    out_dir = Path(out_dir)
    device = cfg.torch_device()
    bench = read_benchmark(benchmark, data_dir)
    if bench.table.empty:
        raise ValueError(f"{benchmark}: no clips found under {data_dir} ({bench.missing} listed but missing)")
    cache = Path(cache_dir) if cache_dir else default_cache_root() / "embeddings"
    with _local_checkpoint(str(checkpoint_dir)) as local:
        card = json.loads((local / "model.json").read_text())
        pretrained = load_model(local, device=device)
        torch.manual_seed(cfg.seed)
        random_init = build_model(card["arch"], card["num_classes"], card.get("width_mult", 1.0)).to(device).eval()
        key = weights_key(local, card["arch"])
    extractors = [
        embedding_extractor("pretrained", key, pretrained.embed, device),
        embedding_extractor("random_init", module_key(random_init, f"{card['arch']}-random"), random_init.embed, device),
        LOGMEL_STATS,
    ]
    features = extract(bench.table, extractors, cache, benchmark, str(data_dir), progress)
    rows, confusion = [], None
    for name in MODELS:
        mean, per_split, matrix = run_protocol(bench, features[name], cfg, device)
        rows.append({"model": name, **mean, "splits": per_split, "feature_dim": int(features[name].shape[1])})
        if name == "pretrained":
            confusion = matrix
        log.info("%s %s: %s", benchmark, name, {k: round(v, 4) for k, v in mean.items()})
    write_json({"benchmark": benchmark, "arch": card["arch"], "checkpoint": key, "rows": rows},
               out_dir / "metrics.json")
    if not bench.multi_label:
        write_json({"labels": list(bench.classes), "matrix": confusion.tolist()}, out_dir / "confusion.json")
    summary = {
        "benchmark": benchmark, "arch": card["arch"], "checkpoint": key,
        "clips": len(bench.table), "classes": len(bench.classes), "missing_clips": bench.missing,
        "splits": [s.name for s in bench.protocol],
        "clips_per_fold": {str(k): int(v) for k, v in bench.table["fold"].value_counts().sort_index().items()},
        **{f"{row['model']}.{m}": round(row[m], 6) for row in rows for m in ("top1", "top5", "map", "auc")},
        "seconds": round(time.time() - started, 1),
    }
    write_json(summary, out_dir / "summary.json")
    return summary
