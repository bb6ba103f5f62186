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

Every row runs for ``seeds`` seeds (``seed``, ``seed + 1``, ...: the classifier's, and the random
weights' of ``random_init``; 1-NN rows have none) and reports their mean, each seed's figures and
their sd; every figure carries the sd over the protocol's splits and a 95% bootstrap interval over
the test clips (:mod:`mmvideos.evaluation.uncertainty`: by source recording where the benchmark has
them, within split and class), whose resampled figures are kept so the report can compare rows
paired. The benchmark is named by what it is (:mod:`mmvideos.benchmarks.naming`).

Output folder: ``metrics.json`` (``{"benchmark", "name", "title", "paper", "clips", "classes",
"bootstrap", "rows": [{"model", "pooling", "top1", "top5", "map", "auc", "seeds", "seed_sd",
"fold_sd", "ci", "n", "resampled", "splits", "fits", ...}]}``, each metric the mean over the
protocol's splits and seeds; ``fits`` says per split how many steps the first seed's fit took and
whether it stopped early), ``confusion.json`` for single-label benchmarks (pre-trained model, summed
over splits, ``{"labels", "matrix"}`` with rows = true class, as KFP's ClassificationMetrics wants)
and ``summary.json``. A checkpoint folder of several pre-training seeds (``pretrain.seeds``) gives
one such folder per seed, ``seed-<seed>/``, gathered in ``transfers.json``; the seeds after the first
compute only the pre-trained rows (the others do not depend on the pre-training).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mmvideos.annotators import is_device
from mmvideos.benchmarks.common import TOP5_MIN_CLASSES
from mmvideos.benchmarks.embeddings import POOLINGS
from mmvideos.data import storage
from mmvideos.data.atomic import scratch_dir
from mmvideos.evaluation.fit import FitConfig
from mmvideos.evaluation.uncertainty import MIN_STRATUM, SplitScores
from mmvideos.model_card import json_at
from mmvideos.progress import keep_alive, progress_bar

if TYPE_CHECKING:
    import torch

    from mmvideos.benchmarks import Benchmark

log = logging.getLogger(__name__)

MODELS = ("pretrained", "random_init", "logmel_stats")
#: 1-NN rows: ``<features>_1nn`` on the features of each of these linear-probe rows.
NEAREST = ("pretrained", "logmel_stats")
#: Which rows a transfer computes (``transfer(rows=...)``).
ROWS = ("all", "pretrained")


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
    seeds: int = 1               # seeds seed, seed+1, ...: the classifier's and the random-init weights'
    bootstrap: int = 1000        # resamples of the test clips behind every interval
    device: str = "auto"         # "auto": CUDA when available

    def __post_init__(self) -> None:
        if self.seeds < 1 or self.bootstrap < 100:
            raise ValueError(f"transfer.seeds must be >= 1 and transfer.bootstrap >= 100 (resamples behind a 95% "
                             f"interval), got {self.seeds} and {self.bootstrap}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"transfer.pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if not (self.device == "auto" or is_device(self.device)):
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
                 ) -> tuple[dict[str, float], dict[str, dict], dict[str, dict], np.ndarray, list[SplitScores]]:
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
        ``stopped_early``...), confusion matrix ``[C, C]`` summed over splits with rows = true class,
        each split's test scores and targets for the bootstrap)
    """
    from mmvideos.evaluation.fit import fit_classifier, predict
    from mmvideos.evaluation.metrics import evaluate
    from mmvideos.evaluation.nearest import nearest_neighbour_scores

    targets = multi_hot(bench.table["labels"].tolist(), len(bench.classes))  # [N, C]
    folds = bench.table["fold"].to_numpy()
    groups = bench.table["src_file"].to_numpy() if "src_file" in bench.table else None
    per_split, fits, confusion = {}, {}, np.zeros((len(bench.classes),) * 2, dtype=np.int64)
    tested = []
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
        tested.append(SplitScores(scores, targets[test]))
        if on_split:
            on_split(split.name)
        if not bench.multi_label:
            np.add.at(confusion, (targets[test].argmax(1), scores.argmax(1)), 1)
    mean = {k: float(np.mean([m[k] for m in per_split.values()])) for k in next(iter(per_split.values()))}
    return mean, per_split, fits, confusion, tested


def bootstrap_weights(bench: Benchmark, resamples: int, seed: int) -> list[np.ndarray]:
    """Per split of the protocol, ``[resamples, n_test]`` bootstrap counts of its test clips: resampled within
    each class (single-label) or the whole test set (multi-label), by source recording where the table has
    ``src_file`` (ESC-50), else by clip; classes with fewer than 5 units in a split are resampled together
    (:func:`mmvideos.evaluation.uncertainty.resample_weights`)."""
    from mmvideos.evaluation.uncertainty import resample_weights

    table, rng = bench.table, np.random.default_rng(seed)
    units = (table["src_file"] if "src_file" in table else table["clip_id"]).astype(str).to_numpy()
    strata = np.zeros(len(table), dtype=np.int64) if bench.multi_label else np.array([c[0] for c in table["labels"]])
    folds = table["fold"].to_numpy()
    return [resample_weights(strata[mask], units[mask], resamples, rng)
            for mask in (np.isin(folds, split.test) for split in bench.protocol)]


def score_rows(bench: Benchmark, features: dict[str, list[np.ndarray]], runs: list[tuple[str, str, bool]],
               cfg: TransferConfig, fit_cfg: FitConfig, device: torch.device,
               on_split: Callable[[str], None] | None = None) -> tuple[list[dict], dict, np.ndarray | None]:
    """Every row of the table over ``cfg.seeds`` seeds, each figure with its uncertainty.

    Args:
        bench: the benchmark.
        features: ``{source: [features of seed 0, seed 1, ...]}``, ``[N, D]`` each; one entry serves every seed.
        runs: ``(row name, features source, 1-NN)`` per row; 1-NN rows run once (they have no seed).
        cfg: the transfer settings (``seed``, ``seeds``, ``bootstrap``).
        fit_cfg: the classifier's settings (validation folds adapted to the benchmark's size).
        device: where the classifiers are fitted.
        on_split: called after each split of each fit (progress).

    Returns:
        (rows: each metric the mean over seeds, ``seeds`` (per-seed figures), ``seed_sd``, ``fold_sd`` (the
        spread over the protocol's splits), ``ci`` (95% bootstrap interval of the figure), ``n`` (test clips,
        classes, splits, seeds) and ``resampled`` (the bootstrap figures, paired across rows, encoded by
        :func:`mmvideos.evaluation.uncertainty.encode`); the
        bootstrap's description; the pre-trained row's confusion matrix of its first seed)
    """
    from mmvideos.evaluation.uncertainty import LEVEL, bootstrap_distribution, over_seeds

    weights = bootstrap_weights(bench, cfg.bootstrap, cfg.seed)
    seeds = [cfg.seed + i for i in range(cfg.seeds)]
    rows, confusion = [], None
    for name, source, nearest in runs:
        figures, per_splits, resampled, fits = [], [], [], None
        for i, seed in enumerate(seeds[:1] if nearest else seeds):
            x = features[source][i % len(features[source])]
            mean, per_split, seed_fits, matrix, tested = run_protocol(
                bench, x, dataclasses.replace(fit_cfg, seed=seed), device, nearest, on_split)
            figures.append({"seed": seed, **mean})
            per_splits.append(per_split)
            resampled.append(bootstrap_distribution(tested, weights))
            fits = fits or seed_fits
            if name == "pretrained" and confusion is None:
                confusion = matrix
            log.info("%s %s seed %d: %s; steps %s", bench.name, name, seed, {k: round(v, 4) for k, v in mean.items()},
                     [f.get("steps") for f in seed_fits.values()])
        # Top-5 over 5 classes or fewer holds the true class by construction: not reported (None)
        dropped = {"top5"} if len(bench.classes) < TOP5_MIN_CLASSES else set()
        figures = [{k: v for k, v in f.items() if k not in dropped} for f in figures]
        metrics = [m for m in figures[0] if m != "seed"]
        rows.append({"model": name, **over_seeds(figures, per_splits, resampled, metrics), "seeds": figures,
                     "n": {"clips": int(sum(w.shape[1] for w in weights)), "classes": len(bench.classes),
                           "splits": len(bench.protocol), "seeds": len(figures)},
                     "fits": fits, "solver": "1-nn" if nearest else cfg.solver,
                     "feature_dim": int(features[source][0].shape[1]), **dict.fromkeys(dropped)})
    unit = "source recording (src_file)" if "src_file" in bench.table else "clip"
    described = {"resamples": cfg.bootstrap, "level": LEVEL, "unit": unit, "seed": cfg.seed,
                 "strata": "split" if bench.multi_label else
                 f"split and class (classes of fewer than {MIN_STRATUM} units in a split pooled)"}
    return rows, described, confusion


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


@contextlib.contextmanager
def _local_checkpoint(checkpoint_dir: str) -> Iterator[Path]:
    """A local folder with the checkpoint's ``model.safetensors`` and ``model.json``."""
    if not storage.is_gcs(checkpoint_dir):
        yield Path(checkpoint_dir)
        return
    with scratch_dir("ckpt") as tmp:
        for name in ("model.safetensors", "model.json"):
            with storage.local_copy(storage.join(checkpoint_dir, name)) as path:
                shutil.copy(path, Path(tmp) / name)
        yield Path(tmp)


def transfer(benchmark: str, data_dir: str | Path, checkpoint_dir: str | Path, out_dir: str | Path,
             cfg: TransferConfig = TransferConfig(), progress: bool = True,
             cache_dir: str | Path | None = None, rows: str = "all") -> dict:
    """Evaluate a pre-trained checkpoint, its baselines and any released model on one benchmark.

    Args:
        benchmark: ``esc50``, ``tut2018`` or ``audioset``.
        data_dir: the benchmark's root in its published layout (local folder or ``gs://``).
        checkpoint_dir: a pretrain output folder (``model.safetensors`` + ``model.json``), or one of several
            seeds' models (``pretrain.seeds``): each is transferred into ``out_dir/seed-<seed>/`` and the results
            gathered in ``out_dir/transfers.json``, which the report reads.
        out_dir: where ``metrics.json``, ``confusion.json`` and ``summary.json`` go.
        cfg: pooling, classifier settings and released baselines.
        progress: show progress bars.
        cache_dir: embedding cache (default ``$MMVIDEOS_CACHE/embeddings``).
        rows: ``all``, or ``pretrained``: only the rows of the pre-trained network (its embedding and
            1-NN), for every pre-training seed after the first; the other rows do not depend on it and
            the report keeps the first seed's (:func:`mmvideos.evaluation.results.merge_pretrain_seeds`).

    Returns:
        The summary (also ``summary.json``).
    """
    import torch

    from mmvideos.benchmarks import read_benchmark
    from mmvideos.benchmarks.common import validation_folds_for
    from mmvideos.benchmarks.embeddings import LOGMEL_STATS, embedding_extractor, extract, module_key, weights_key
    from mmvideos.benchmarks.naming import benchmark_name
    from mmvideos.data.atomic import write_json
    from mmvideos.data.runrecord import write_summary
    from mmvideos.data.files import cache_dir as default_cache_root
    from mmvideos.demo.benchmark import is_demo_benchmark
    from mmvideos.evaluation.baselines import load_released_vggish, vggish_examples
    from mmvideos.models import build_model
    from mmvideos.stages.pretrain import seed_folders
    from mmvideos.training.checkpoint import load_model

    started = time.time()
    if rows not in ROWS:
        raise ValueError(f"rows must be one of {ROWS}, got {rows!r}")
    out_dir = Path(out_dir)
    models = seed_folders(str(checkpoint_dir))
    if len(models) > 1:  # pretrain.seeds: one transfer per pre-trained model, gathered in a collection
        per_seed = {str(seed): transfer(benchmark, data_dir, folder, out_dir / f"seed-{seed}", cfg, progress, cache_dir,
                                        rows="all" if i == 0 else "pretrained")
                    for i, (seed, folder) in enumerate(models.items())}
        write_json([json.loads((out_dir / f"seed-{seed}" / "metrics.json").read_text()) for seed in per_seed],
                   out_dir / "transfers.json")
        write_json({"benchmark": benchmark, "seeds": list(per_seed), "per_seed": per_seed}, out_dir / "summary.json")
        return per_seed
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
        key = weights_key(local, card["arch"])
    networks = {"pretrained": (key, pretrained, None)}
    everything = rows == "all"
    for seed in range(cfg.seed, cfg.seed + cfg.seeds) if everything else ():  # a random-init network per seed
        torch.manual_seed(seed)
        random_init = build_model(card["arch"], card["num_classes"], card.get("width_mult", 1.0)).to(device).eval()
        networks[f"random_init@{seed}"] = (module_key(random_init, f"{card['arch']}-random"), random_init, None)
    for name, entry in cfg.baselines.items() if everything else ():
        released, released_key = load_released_vggish(entry["weights"], entry.get("pca", ""))
        networks[name] = (released_key, released.to(device), vggish_examples)
    pool = {"pooling": cfg.pooling, "seconds": bench.clip_seconds}
    extractors = [embedding_extractor(name, k, net.embed, device, front_end=front_end, **pool)
                  for name, (k, net, front_end) in networks.items()]
    extracted = extract(bench.table, extractors + ([LOGMEL_STATS] if everything else []), cache, benchmark,
                        str(data_dir), progress)
    features = {name: [x] for name, x in extracted.items() if "@" not in name}
    if everything:  # the row of the random-init networks: their mean
        features["random_init"] = [x for name, x in extracted.items() if name.startswith("random_init@")]
    runs = [(name, name, False) for name in [*MODELS, *cfg.baselines]] + [(f"{n}_1nn", n, True) for n in NEAREST]
    runs = [run for run in runs if everything or run[1] == "pretrained"]
    bar = progress_bar(total=sum(1 if nearest else cfg.seeds for *_, nearest in runs) * len(bench.protocol),
                       desc=f"{benchmark}: fits", unit="fit", disable=not progress)
    with keep_alive(bar):  # a line at least every 15 s, however long one fit takes
        scored, bootstrap, confusion = score_rows(bench, features, runs, cfg, fit_cfg, device, lambda _: bar.update())
    bar.close()
    for row, (_, source, _) in zip(scored, runs):
        row["pooling"] = "mean_std" if source == "logmel_stats" else cfg.pooling
    notes, warnings = [fold_note] if fold_note else [], caveats(scored, bench, json_at(checkpoint_dir, "summary.json"))
    named = benchmark_name(benchmark, str(data_dir), len(bench.classes), len(bench.table),
                           len(bench.table) + bench.missing, demo=is_demo_benchmark(data_dir))
    write_json({"benchmark": benchmark, "arch": card["arch"], "checkpoint": key, "pretrain_seed": card.get("seed"),
                "name": named.short, "title": named.title, "paper": named.real,
                "clips": len(bench.table), "classes": len(bench.classes),
                "bootstrap": bootstrap, "rows": scored, "val_folds": val_folds, "notes": notes, "warnings": warnings},
               out_dir / "metrics.json")
    if not bench.multi_label:
        write_json({"labels": list(bench.classes), "matrix": confusion.tolist()}, out_dir / "confusion.json")
    summary = {
        "benchmark": benchmark, "title": named.title, "arch": card["arch"], "checkpoint": key,
        "clips": len(bench.table), "classes": len(bench.classes), "missing_clips": bench.missing,
        "splits": [s.name for s in bench.protocol], "pooling": cfg.pooling, "solver": cfg.solver,
        "clips_per_fold": {str(k): int(v) for k, v in bench.table["fold"].value_counts().sort_index().items()},
        "val_folds": val_folds, "notes": notes, "warnings": warnings,
        **{f"{row['model']}.{m}": round(row[m], 6) for row in scored for m in ("top1", "top5", "map", "auc")
           if row[m] is not None},
        **{f"{row['model']}.top1_ci": [round(v, 4) for v in row["ci"]["top1"] or []] for row in scored},
        **{f"{row['model']}.steps": [f["steps"] for f in row["fits"].values()]
           for row in scored if row["solver"] != "1-nn"},
        "seconds": round(time.time() - started, 1),
    }
    write_summary(summary, out_dir)
    return summary
