"""Stage: transfer, a shallow classifier on frozen clip features, per benchmark (paper section 4).

For one benchmark (``esc50``, ``tut2018`` or ``audioset``, see :mod:`mmvideos.benchmarks`)
these feature sets go through the same protocol and the same classifier:

* ``pretrained``: the pre-trained network's per-second embeddings, pooled by ``pooling`` (see
  :mod:`mmvideos.benchmarks.embeddings`): ``concat`` (the paper's: the clip brought to the
  benchmark's length, its 128-d embeddings concatenated) or ``mean_max``;
* ``random_init``: the same architecture with random weights (seeded, untrained), which shows
  how much of the result is the pre-training rather than the architecture;
* ``logmel_stats``: mean and std over time of each raw log-mel bin, which shows how much is
  learnt at all;
* one row per entry of ``baselines``: a released model, pooled like ``pretrained``; today
  Google's VGGish trained on YouTube-100M, the paper's main baseline (:mod:`mmvideos.evaluation.baselines`);
* ``pretrained_1nn`` and ``logmel_stats_1nn``: a 1-nearest-neighbour classifier on the
  pre-trained embeddings and on the log-mel statistics, on the same splits
  (:mod:`mmvideos.evaluation.nearest`): the control a linear probe needs, since on small
  benchmarks it can lift raw features close to a pre-trained embedding.

The classifier and how it is fitted (a step budget, early stopping on a validation split carved
from the training folds, or L-BFGS for the linear case) are in :mod:`mmvideos.evaluation.fit`;
the paper's lr 2e-4, batch 128, weight decay 1e-6 and dropout (0.3 ESC-50, 0.5 TUT and
AudioSet) are the defaults. Everything is seeded, so a run is reproducible on the same device.

Only the settings (:class:`TransferConfig`) are needed to import this module; torch, the
networks and the classifier's solvers are imported by the functions that run them, so that
loading ``params.yaml`` stays quick for every command.

Output folder: ``metrics.json`` (``{"benchmark", "rows": [{"model", "pooling", "top1", "top5",
"map", "auc", "splits", "fits", ...}]}``, each metric the mean over the protocol's splits;
``fits`` says per split how many steps the fit took and whether it stopped early),
``confusion.json`` for single-label benchmarks (pre-trained model, summed over splits,
``{"labels", "matrix"}`` with rows = true class, as KFP's ClassificationMetrics wants) and
``summary.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mmvideos.benchmarks.common import TOP5_MIN_CLASSES
from mmvideos.benchmarks.embeddings import POOLINGS
from mmvideos.data import storage
from mmvideos.evaluation.fit import FitConfig
from mmvideos.progress import keep_alive, progress_bar

if TYPE_CHECKING:
    import torch

    from mmvideos.benchmarks import Benchmark

log = logging.getLogger(__name__)

MODELS = ("pretrained", "random_init", "logmel_stats")
#: 1-NN rows: ``<features>_1nn`` on the features of each of these linear-probe rows.
NEAREST = ("pretrained", "logmel_stats")


@dataclasses.dataclass(frozen=True)
class TransferConfig:
    """``params.yaml: transfer``; defaults are the paper's values where it gives them."""

    solver: str = "lbfgs"        # "lbfgs" (linear classifier only) or "adam" (the paper's optimiser)
    max_steps: int = 20000       # per fit, whatever the number of clips
    eval_every: int = 50
    patience: int = 20
    val_folds: int = 5           # validation splits carved from the training folds, never the test fold
    val_rounds: int = 5          # how many of them choose the step count / penalty (1: one split)
    lr: float = 2e-4
    batch_size: int = 128
    weight_decay: float = 1e-6
    dropout_esc50: float = 0.3
    dropout_tut2018: float = 0.5
    dropout_audioset: float = 0.5
    hidden_units: int = 0        # 0: linear classifier on the features (the paper's swapped last layer)
    pooling: str = "concat"      # "concat" (the paper's) or "mean_max"
    baselines: dict = dataclasses.field(default_factory=dict)  # name -> {weights, pca}: released VGGish
    seed: int = 0
    device: str = "auto"         # "auto": CUDA when available

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"transfer.pooling must be one of {POOLINGS}, got {self.pooling!r}")
        kind, _, index = self.device.partition(":")
        if not (self.device in ("auto", "cpu") or kind == "cuda" and (not _ or index.isdigit())):
            raise ValueError(f"transfer.device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        for name, entry in self.baselines.items():
            if name in MODELS or name.endswith("_1nn") or not isinstance(entry, dict) or not entry.get("weights") or \
                    set(entry) - {"weights", "pca"}:
                raise ValueError(f"transfer.baselines.{name}: expected {{weights: URI, pca: URI}} under a name "
                                 f"other than {MODELS}, got {entry!r}")
        self.fit_config("esc50")  # checks the classifier settings

    def fit_config(self, benchmark: str) -> FitConfig:
        """The classifier settings for ``benchmark`` (its dropout)."""
        return FitConfig(solver=self.solver, lr=self.lr, batch_size=self.batch_size, weight_decay=self.weight_decay,
                         dropout=getattr(self, f"dropout_{benchmark}"), hidden_units=self.hidden_units,
                         max_steps=self.max_steps, eval_every=self.eval_every, patience=self.patience,
                         val_folds=self.val_folds, val_rounds=self.val_rounds, seed=self.seed)

    def torch_device(self) -> torch.device:
        """The device to run on."""
        import torch

        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


def multi_hot(labels: list[list[int]], num_classes: int) -> np.ndarray:
    """Label index lists -> ``[N, C]`` 0/1 float32."""
    out = np.zeros((len(labels), num_classes), dtype=np.float32)
    for row, indices in enumerate(labels):
        out[row, indices] = 1.0
    return out


def run_protocol(bench: Benchmark, features: np.ndarray, cfg: FitConfig, device: torch.device,
                 nearest: bool = False, on_split: Callable[[str], None] | None = None,
                 ) -> tuple[dict[str, float], dict[str, dict], dict[str, dict], np.ndarray]:
    """Train and score on every split of the benchmark's protocol.

    Args:
        bench: the benchmark (clips, labels, folds, protocol).
        features: ``[N, D]`` clip features in the table's order.
        cfg: the linear probe's settings.
        device: where the probe is fitted.
        nearest: score with 1-NN (:func:`mmvideos.evaluation.nearest.nearest_neighbour_scores`)
            instead of fitting the probe.
        on_split: called with each split's name once it is scored (progress).

    Returns:
        (metrics averaged over splits, metrics per split, the fit per split (``steps``,
        ``stopped_early``...), confusion matrix ``[C, C]`` summed over splits with rows = true class)
    """
    from mmvideos.evaluation.fit import fit_classifier, predict
    from mmvideos.evaluation.metrics import evaluate
    from mmvideos.evaluation.nearest import nearest_neighbour_scores

    targets = multi_hot(bench.table["labels"].tolist(), len(bench.classes))  # [N, C]
    folds = bench.table["fold"].to_numpy()
    groups = bench.table["src_file"].to_numpy() if "src_file" in bench.table else None
    per_split, fits, confusion = {}, {}, np.zeros((len(bench.classes),) * 2, dtype=np.int64)
    for split in bench.protocol:
        train, test = np.isin(folds, split.train), np.isin(folds, split.test)
        if not train.any() or not test.any():
            raise ValueError(f"{bench.name}: split {split.name} has {train.sum()} training and {test.sum()} "
                             f"test clips; both must be non-empty")
        if nearest:
            scores = nearest_neighbour_scores(features[train], targets[train], features[test])
            fits[split.name] = {"classifier": "1-nn", "train_clips": int(train.sum())}
        else:
            fit = fit_classifier(features[train], targets[train], bench.multi_label, cfg, device,
                                 None if groups is None else groups[train])
            scores = predict(fit.model, features[test], bench.multi_label, device)  # [n_test, C]
            fits[split.name] = fit.record()
        per_split[split.name] = evaluate(scores, targets[test])
        if on_split:
            on_split(split.name)
        if not bench.multi_label:
            np.add.at(confusion, (targets[test].argmax(1), scores.argmax(1)), 1)
    if len(bench.classes) < TOP5_MIN_CLASSES:  # the true class is among 5 of at most 5: not reported
        per_split = {name: {**m, "top5": None} for name, m in per_split.items()}
    mean = {k: None if per_split[next(iter(per_split))][k] is None else float(np.mean([m[k] for m in per_split.values()]))
            for k in next(iter(per_split.values()))}
    return mean, per_split, fits, confusion


def _row(name: str, source: str, nearest: bool, bench: Benchmark, features: dict, fit_cfg: FitConfig,
         device: torch.device, cfg: TransferConfig, networks: dict, on_split: Callable[[str], None]) -> dict:
    """One row of the results: the protocol run on the features of ``source`` (its confusion matrix
    under ``confusion``, for the caller to keep or drop)."""
    mean, per_split, fits, matrix = run_protocol(bench, features[source], fit_cfg, device, nearest, on_split)
    log.info("%s %s: %s; steps %s", bench.name, name, {k: round(v, 4) for k, v in mean.items() if v is not None},
             [f.get("steps") for f in fits.values()])
    return {"model": name, "pooling": cfg.pooling if source in networks else "mean_std", **mean,
            "splits": per_split, "fits": fits, "solver": "1-nn" if nearest else cfg.solver,
            "feature_dim": int(features[source].shape[1]), "confusion": matrix}


#: Fewer pretraining clips than this and a pretrained row says little about the method (the paper: ~15 M).
TINY_PRETRAINING = 1000


def caveats(rows: list[dict], bench: Benchmark, model_summary: dict) -> list[str]:
    """Warnings where a result cannot mean much: a tiny pretraining set, a pretrained row scoring
    below the raw log-mel statistics."""
    warnings = []
    clips = model_summary.get("train_clips")
    if clips is not None and clips < TINY_PRETRAINING:
        warnings.append(f"the model was pretrained on {clips} clips (fewer than {TINY_PRETRAINING}; the paper: about "
                        "15 M): its rows show that the pipeline runs, not what the method learns")
    by_name = {row["model"]: row for row in rows}
    metric = "map" if bench.multi_label else "top1"
    pretrained, logmel = by_name.get("pretrained"), by_name.get("logmel_stats")
    if pretrained and logmel and pretrained[metric] < logmel[metric]:
        warnings.append(f"the pretrained embeddings score below the raw log-mel statistics on {bench.name} "
                        f"({metric} {100 * pretrained[metric]:.1f} vs {100 * logmel[metric]:.1f}): the pretraining "
                        "did not help here")
    return warnings


def _json_at(folder: str | Path, name: str) -> dict:
    path = storage.join(str(folder), name)
    return json.loads(storage.read_bytes(path)) if storage.exists(path) else {}


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
    """Evaluate a pre-trained checkpoint, its baselines and any released model on one benchmark.

    Args:
        benchmark: ``esc50``, ``tut2018`` or ``audioset``.
        data_dir: the benchmark's root in its published layout (local folder or ``gs://``).
        checkpoint_dir: a pretrain output folder (``model.safetensors`` + ``model.json``).
        out_dir: where ``metrics.json``, ``confusion.json`` and ``summary.json`` go.
        cfg: pooling, classifier settings and released baselines.
        progress: show progress bars.
        cache_dir: embedding cache (default ``$MMVIDEOS_CACHE/embeddings``).

    Returns:
        The summary (also ``summary.json``).
    """
    import torch

    from mmvideos.benchmarks import read_benchmark
    from mmvideos.benchmarks.common import validation_folds_for
    from mmvideos.benchmarks.embeddings import LOGMEL_STATS, embedding_extractor, extract, module_key, weights_key
    from mmvideos.data.atomic import write_json
    from mmvideos.data.files import cache_dir as default_cache_root
    from mmvideos.evaluation.baselines import load_released_vggish, vggish_examples
    from mmvideos.models import build_model
    from mmvideos.training.checkpoint import load_model

    started = time.time()
    out_dir = Path(out_dir)
    device = cfg.torch_device()
    bench = read_benchmark(benchmark, data_dir)
    if bench.table.empty:
        raise ValueError(f"{benchmark}: no clips found under {data_dir} ({bench.missing} listed but missing)")
    fit_cfg = cfg.fit_config(benchmark)  # validation parts the benchmark's size allows, before any decoding
    val_folds, fold_note = validation_folds_for(bench.table, bench.protocol, bench.multi_label, fit_cfg.val_folds)
    fit_cfg = dataclasses.replace(fit_cfg, val_folds=val_folds, val_rounds=min(fit_cfg.val_rounds, val_folds))
    cache = Path(cache_dir) if cache_dir else default_cache_root() / "embeddings"
    with _local_checkpoint(str(checkpoint_dir)) as local:
        card = json.loads((local / "model.json").read_text())
        pretrained = load_model(local, device=device)
        torch.manual_seed(cfg.seed)
        random_init = build_model(card["arch"], card["num_classes"], card.get("width_mult", 1.0)).to(device).eval()
        key = weights_key(local, card["arch"])
    networks = {"pretrained": (key, pretrained, None),
                "random_init": (module_key(random_init, f"{card['arch']}-random"), random_init, None)}
    for name, entry in cfg.baselines.items():
        released, released_key = load_released_vggish(entry["weights"], entry.get("pca", ""))
        networks[name] = (released_key, released.to(device), vggish_examples)
    pool = {"pooling": cfg.pooling, "seconds": bench.clip_seconds}
    extractors = [embedding_extractor(name, k, net.embed, device, front_end=front_end, **pool)
                  for name, (k, net, front_end) in networks.items()]
    features = extract(bench.table, extractors + [LOGMEL_STATS], cache, benchmark, str(data_dir), progress)
    rows, confusion = [], None
    runs = [(name, name, False) for name in [*MODELS, *cfg.baselines]] + [(f"{n}_1nn", n, True) for n in NEAREST]
    bar = progress_bar(total=len(runs) * len(bench.protocol), desc=f"{benchmark}: fits", unit="fit",
                       disable=not progress)
    with keep_alive(bar):  # a line at least every 15 s, however long one fit takes
        for name, source, nearest in runs:
            bar.set_postfix_str(name, refresh=False)
            row = _row(name, source, nearest, bench, features, fit_cfg, device, cfg, networks, lambda _: bar.update())
            matrix = row.pop("confusion")
            confusion = matrix if name == "pretrained" else confusion
            rows.append(row)
    bar.close()
    notes, warnings = [fold_note] if fold_note else [], caveats(rows, bench, _json_at(checkpoint_dir, "summary.json"))
    write_json({"benchmark": benchmark, "arch": card["arch"], "checkpoint": key, "rows": rows,
                "classes": len(bench.classes), "clips": len(bench.table), "val_folds": val_folds, "notes": notes,
                "warnings": warnings}, out_dir / "metrics.json")
    if not bench.multi_label:
        write_json({"labels": list(bench.classes), "matrix": confusion.tolist()}, out_dir / "confusion.json")
    summary = {
        "benchmark": benchmark, "arch": card["arch"], "checkpoint": key,
        "clips": len(bench.table), "classes": len(bench.classes), "missing_clips": bench.missing,
        "splits": [s.name for s in bench.protocol], "pooling": cfg.pooling, "solver": cfg.solver,
        "clips_per_fold": {str(k): int(v) for k, v in bench.table["fold"].value_counts().sort_index().items()},
        "val_folds": val_folds, "notes": notes, "warnings": warnings,
        **{f"{row['model']}.{m}": round(row[m], 6) for row in rows for m in ("top1", "top5", "map", "auc")
           if row[m] is not None},
        **{f"{row['model']}.steps": [f["steps"] for f in row["fits"].values()]
           for row in rows if row["solver"] != "1-nn"},
        "seconds": round(time.time() - started, 1),
    }
    write_json(summary, out_dir / "summary.json")
    return summary
