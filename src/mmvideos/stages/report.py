"""Stage: report, one results table over every transfer benchmark and model (paper Tables 2-4).

Reads the transfer results (each transfer output's ``metrics.json``, or collections of them)
and writes to ``out_dir``:

* ``results.md`` and ``results.csv``: rows = models (``<arch> pretrained`` for every
  architecture of ``pretrain.models``, any released baseline by its name, ``<arch> random
  init``, ``log-mel stats``, the 1-NN controls ``<arch> pretrained 1-NN`` and ``log-mel stats
  1-NN``, and the paper's own reference rows, e.g. human listeners on ESC-50, with only their
  ``(paper)`` figures), columns = Top-1, Top-5, mAP and AUC per benchmark, in percent,
  each figure the paper publishes in a ``(paper)`` column beside ours
  (:mod:`mmvideos.evaluation.paper_results`), then ``Pooling``: how each row's clip vector was made
  (``concat``, ``mean_max`` or ``mean_std`` for the log-mel statistics);
* ``metrics.json``: flat keys DVC can track and diff, e.g. ``esc50.vggish_fc.pretrained.top1``
  (fractions);
* ``results.html``: the table and the plot in one self-contained page (for the Kubeflow UI);
* ``results.png``: grouped bars of Top-1 (single-label benchmarks) or mAP (AudioSet), the
  paper's figure as a tick on each bar;
* ``summary.json``.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import pandas as pd

from mmvideos.cluster.kfp_io import markdown_table
from mmvideos.data import storage
from mmvideos.data.atomic import atomic_path, write_json, write_text
from mmvideos.evaluation.metrics import METRICS
from mmvideos.evaluation.paper_results import PAPER_METRICS, PAPER_ORDER, PAPER_REFERENCES, paper_value

TITLES = {"esc50": "ESC-50", "tut2018": "TUT 2018", "audioset": "AudioSet"}
METRIC_TITLES = {"top1": "Top-1", "top5": "Top-5", "map": "mAP", "auc": "AUC"}
#: The headline metric per benchmark for the plot: the paper leads with mAP on AudioSet.
HEADLINE = {"audioset": "map"}
#: A collection of transfer results (several benchmarks, or several models) in one folder.
COLLECTION = "transfers.json"
#: Table groups, top to bottom; a released baseline (any other model name) goes in group 1.
GROUPS = {"pretrained": 0, "reference": 2, "random_init": 3, "logmel_stats": 4, "pretrained_1nn": 5,
          "logmel_stats_1nn": 6}
REFERENCE_ORDER = [label for rows in PAPER_REFERENCES.values() for label in rows]
#: Rows whose features depend on the pre-trained architecture (their metrics keys name it).
ARCH_ROWS = ("pretrained", "random_init", "pretrained_1nn")


def _model_label(model: str, arch: str) -> str:
    return {"pretrained": f"{arch} pretrained", "random_init": f"{arch} random init",
            "logmel_stats": "log-mel stats", "pretrained_1nn": f"{arch} pretrained 1-NN",
            "logmel_stats_1nn": "log-mel stats 1-NN"}.get(model, model)


def _paper_row(model: str, arch: str) -> str | None:
    """The paper's row for one of ours: the architecture it pre-trained, or a released baseline."""
    if model == "pretrained":
        return arch
    return None if model in GROUPS else model


def _order(label: str, model: str, arch: str) -> tuple:
    """Rows as in the paper's tables: our pre-trained models, released baselines, the paper's
    reference rows, then controls."""
    rank = PAPER_ORDER.index(arch) if arch in PAPER_ORDER else len(PAPER_ORDER)
    return GROUPS.get(model, 1), rank, label


def load_metrics(metrics_dirs: list[str | Path]) -> list[dict]:
    """The transfer results in each folder (local or ``gs://``), in the order given.

    A folder is one transfer output (its ``metrics.json``) or a collection of them
    (``transfers.json``, a list, written by :func:`collect`).
    """
    loaded = []
    for folder in metrics_dirs:
        collected = storage.join(folder, COLLECTION)
        name, many = (COLLECTION, True) if storage.exists(collected) else ("metrics.json", False)
        with storage.local_copy(storage.join(folder, name)) as path:
            data = json.loads(Path(path).read_text())
        loaded.extend(data if many else [data])
    return loaded


def collect(metrics_dirs: list[str | Path], out_dir: str | Path) -> int:
    """Gather transfer outputs (e.g. one model's, one per benchmark) into ``out_dir/transfers.json``."""
    results = load_metrics(metrics_dirs)
    write_json(results, Path(out_dir) / COLLECTION)
    return len(results)


def results_table(results: list[dict]) -> pd.DataFrame:
    """One row per model, in %: per benchmark its Top-1, Top-5, mAP and AUC, each of the paper's
    figures (:mod:`mmvideos.evaluation.paper_results`) in a ``(paper)`` column beside ours; then ``Pooling``:
    how the row's clip vector was made (several joined by ``/`` if the benchmarks differ).

    Rows: every architecture pre-trained here (in the paper's order), the released baselines,
    the paper's reference rows for the benchmarks present (:data:`PAPER_REFERENCES`, paper
    figures only), each architecture with random weights, the log-mel statistics, the 1-NN
    controls. Results of several
    architectures (the ablation, ``pretrain.models``) make one table.
    """
    rows: dict[str, dict] = {}
    columns: list[str] = []
    for result in results:
        benchmark, arch = result["benchmark"], result.get("arch", "")
        title = TITLES.get(benchmark, benchmark)
        for metric in METRICS:
            ours = f"{title} {METRIC_TITLES[metric]}"
            wanted = [ours] + ([f"{ours} (paper)"] if metric in PAPER_METRICS.get(benchmark, ()) else [])
            columns += [c for c in wanted if c not in columns]
        for row in result["rows"]:
            label = _model_label(row["model"], arch)
            entry = rows.setdefault(label, {"order": _order(label, row["model"], arch), "cells": {}, "pooling": []})
            paper = _paper_row(row["model"], arch)
            for metric in METRICS:
                entry["cells"][f"{title} {METRIC_TITLES[metric]}"] = (
                    None if row.get(metric) is None else round(100 * row[metric], 1))  # None: not meaningful here
                if metric in PAPER_METRICS.get(benchmark, ()):
                    entry["cells"][f"{title} {METRIC_TITLES[metric]} (paper)"] = (
                        paper_value(benchmark, paper, metric) if paper else None)
            if row.get("pooling") and row["pooling"] not in entry["pooling"]:
                entry["pooling"].append(row["pooling"])
        for label, figures in PAPER_REFERENCES.get(benchmark, {}).items():
            # in the paper's order: its tables list them first
            order = (GROUPS["reference"], REFERENCE_ORDER.index(label), label)
            entry = rows.setdefault(label, {"order": order, "cells": {}, "pooling": []})
            entry["cells"] |= {f"{title} {METRIC_TITLES[m]} (paper)": v for m, v in figures.items()}
    ordered = sorted(rows.items(), key=lambda item: item[1]["order"])
    frame = pd.DataFrame([{"Model": label, **{c: entry["cells"].get(c) for c in columns},
                           "Pooling": "/".join(entry["pooling"])} for label, entry in ordered])
    return frame


def _display(table: pd.DataFrame) -> pd.DataFrame:
    """The table for people: a figure the paper does not give is a dash, not ``nan``."""
    return table.astype(object).where(table.notna(), "–")


def _plot(table: pd.DataFrame, benchmarks: list[str], target: Path) -> None:
    """Grouped bars of each row's headline metric per benchmark; the paper's figure as a tick."""
    # the object API needs no display backend (pipeline nodes have none); imported where drawn
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(7.5, 2.4 + 2.6 * len(benchmarks)), 4.2))  # wide enough for its title
    ax = fig.subplots()
    width = 0.8 / len(table)
    for i, (_, row) in enumerate(table.iterrows()):
        positions = [j + (i - (len(table) - 1) / 2) * width for j in range(len(benchmarks))]
        columns = [f"{TITLES.get(b, b)} {METRIC_TITLES[HEADLINE.get(b, 'top1')]}" for b in benchmarks]
        ax.bar(positions, [row.get(c) if pd.notna(row.get(c)) else 0.0 for c in columns], width, label=row["Model"])
        paper = [row.get(f"{c} (paper)") for c in columns]
        shown = [(x, v) for x, v in zip(positions, paper) if v is not None and pd.notna(v)]
        if shown:
            ax.scatter(*zip(*shown), marker="_", s=260, linewidths=2.5, color="black", zorder=3)
    ax.set_xticks(range(len(benchmarks)))
    ax.set_xticklabels([f"{TITLES.get(b, b)}\n({METRIC_TITLES[HEADLINE.get(b, 'top1')]})" for b in benchmarks])
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("Transfer from frozen features (ticks: the paper's figure)")
    fig.tight_layout()
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=120)


def flat_metrics(results: list[dict]) -> dict[str, float]:
    """``metrics.json`` keys DVC can track and diff: ``<benchmark>.<arch>.<row>.<metric>`` for the
    rows that depend on the architecture, ``<benchmark>.<row>.<metric>`` for the others."""
    flat = {}
    for result in results:
        for row in result["rows"]:
            arch = result.get("arch", "")
            name = f"{arch}.{row['model']}" if row["model"] in ARCH_ROWS and arch else row["model"]
            flat |= {f"{result['benchmark']}.{name}.{m}": round(row[m], 6) for m in METRICS if row.get(m) is not None}
    return flat


def _caveats(results: list[dict]) -> str:
    """The transfer steps' warnings and notes (what they adapted) as a Markdown list, each once."""
    lines = dict.fromkeys(f"- {kind}: {text}" for result in results for kind in ("warning", "note")
                          for text in result.get(f"{kind}s", []))
    return ("\n" + "\n".join(lines) + "\n") if lines else ""


def report(metrics_dirs: list[str | Path], out_dir: str | Path) -> dict:
    """Gather transfer results into the paper-style table, DVC metrics and a plot.

    Args:
        metrics_dirs: transfer output folders (one per benchmark and model), or collections of
            them (:func:`collect`).
        out_dir: where the results go.

    Returns:
        The summary (also ``summary.json``).
    """
    if not metrics_dirs:
        raise ValueError("report needs at least one transfer output folder")
    out_dir = Path(out_dir)
    results = load_metrics(metrics_dirs)
    table = results_table(results)
    benchmarks = list(dict.fromkeys(r["benchmark"] for r in results))
    write_text(table.to_csv(index=False), out_dir / "results.csv")
    write_text("# Transfer results (%, frozen features + shallow classifier)\n\n" + markdown_table(_display(table))
               + "\n(paper): the paper's Tables 2-4; – where it gives no figure (or where it means nothing, as Top-5 "
               "over 5 classes or fewer).\n" + _caveats(results), out_dir / "results.md")
    write_json(flat_metrics(results), out_dir / "metrics.json")
    _plot(table, benchmarks, out_dir / "results.png")
    image = base64.b64encode((out_dir / "results.png").read_bytes()).decode()
    write_text("<!doctype html><html><head><meta charset='utf-8'><title>mmvideos transfer results</title></head>"
               "<body><h1>Transfer results (%, frozen features + shallow classifier)</h1>"
               f"{_display(table).to_html(index=False)}"
               + "".join(f"<p>{html.escape(line[2:])}</p>" for line in _caveats(results).split("\n") if line)
               + f"<img alt='results' src='data:image/png;base64,{image}'></body></html>\n",
               out_dir / "results.html")
    summary = {"benchmarks": benchmarks, "models": table["Model"].tolist(),
               "files": ["results.md", "results.csv", "results.html", "metrics.json", "results.png"]}
    write_json(summary, out_dir / "summary.json")
    return summary
