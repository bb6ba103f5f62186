"""Stage: report, one results table over every transfer benchmark (paper Tables 2-4).

Reads the ``metrics.json`` of each transfer output folder and writes to ``out_dir``:

* ``results.md`` and ``results.csv``: rows = models (``<arch> pretrained``, ``<arch> random
  init``, ``log-mel stats`` and any released baseline by its name), columns = Top-1, Top-5, mAP
  and AUC per benchmark, in percent, then ``Pooling``: how each row's clip vector was made
  (``concat``, ``mean_max`` or ``mean_std`` for the log-mel statistics);
* ``metrics.json``: flat keys DVC can track and diff, e.g. ``esc50.pretrained.top1`` (fractions);
* ``results.html``: the table and the plot in one self-contained page (for the Kubeflow UI);
* ``results.png``: grouped bars of Top-1 (single-label benchmarks) or mAP (AudioSet);
* ``summary.json``.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure  # the object API needs no display backend (pipeline nodes have none)

from mmvideos import storage
from mmvideos.atomic import atomic_path, write_json, write_text
from mmvideos.kfp_io import markdown_table
from mmvideos.metrics import METRICS

TITLES = {"esc50": "ESC-50", "tut2018": "TUT 2018", "audioset": "AudioSet"}
METRIC_TITLES = {"top1": "Top-1", "top5": "Top-5", "map": "mAP", "auc": "AUC"}
#: The headline metric per benchmark for the plot: the paper leads with mAP on AudioSet.
HEADLINE = {"audioset": "map"}


def _model_label(model: str, arch: str) -> str:
    return {"pretrained": f"{arch} pretrained", "random_init": f"{arch} random init",
            "logmel_stats": "log-mel stats"}.get(model, model)


def load_metrics(metrics_dirs: list[str | Path]) -> list[dict]:
    """The ``metrics.json`` of each folder (local or ``gs://``), in the order given."""
    loaded = []
    for folder in metrics_dirs:
        with storage.local_copy(storage.join(folder, "metrics.json")) as path:
            loaded.append(json.loads(Path(path).read_text()))
    return loaded


def results_table(results: list[dict]) -> pd.DataFrame:
    """One row per model, one ``"<Benchmark> <Metric>"`` column per benchmark and metric, in %,
    then the row's pooling (several joined by ``/`` if the benchmarks differ)."""
    table: dict[str, dict[str, float]] = {}
    poolings: dict[str, list[str]] = {}
    for result in results:
        title = TITLES.get(result["benchmark"], result["benchmark"])
        for row in result["rows"]:
            label = _model_label(row["model"], result.get("arch", ""))
            cells = table.setdefault(label, {})
            for metric in METRICS:
                cells[f"{title} {METRIC_TITLES[metric]}"] = round(100 * row[metric], 1)
            seen = poolings.setdefault(label, [])
            if row.get("pooling") and row["pooling"] not in seen:
                seen.append(row["pooling"])
    frame = pd.DataFrame.from_dict(table, orient="index").rename_axis("Model").reset_index()
    frame["Pooling"] = ["/".join(poolings[label]) for label in frame["Model"]]
    return frame


def _plot(results: list[dict], target: Path) -> None:
    fig = Figure(figsize=(2.2 + 2.2 * len(results), 3.6))
    ax = fig.subplots()
    models = [r["model"] for r in results[0]["rows"]]
    width = 0.8 / len(models)
    for i, model in enumerate(models):
        values = []
        for result in results:
            metric = HEADLINE.get(result["benchmark"], "top1")
            row = next((r for r in result["rows"] if r["model"] == model), None)
            values.append(100 * row[metric] if row else 0.0)
        positions = [j + (i - (len(models) - 1) / 2) * width for j in range(len(results))]
        ax.bar(positions, values, width, label=_model_label(model, results[0].get("arch", "")))
    ax.set_xticks(range(len(results)))
    ax.set_xticklabels([f"{TITLES.get(r['benchmark'], r['benchmark'])}\n"
                        f"({METRIC_TITLES[HEADLINE.get(r['benchmark'], 'top1')]})" for r in results])
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    ax.set_title("Transfer from frozen features")
    fig.tight_layout()
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=120)


def report(metrics_dirs: list[str | Path], out_dir: str | Path) -> dict:
    """Gather transfer results into the paper-style table, DVC metrics and a plot.

    Args:
        metrics_dirs: transfer output folders, one per benchmark.
        out_dir: where the results go.

    Returns:
        The summary (also ``summary.json``).
    """
    if not metrics_dirs:
        raise ValueError("report needs at least one transfer output folder")
    out_dir = Path(out_dir)
    results = load_metrics(metrics_dirs)
    table = results_table(results)
    write_text(table.to_csv(index=False), out_dir / "results.csv")
    write_text("# Transfer results (%, frozen features + shallow classifier)\n\n" + markdown_table(table),
               out_dir / "results.md")
    flat = {f"{r['benchmark']}.{row['model']}.{m}": round(row[m], 6)
            for r in results for row in r["rows"] for m in METRICS}
    write_json(flat, out_dir / "metrics.json")
    _plot(results, out_dir / "results.png")
    image = base64.b64encode((out_dir / "results.png").read_bytes()).decode()
    write_text("<!doctype html><html><head><meta charset='utf-8'><title>mmvideos transfer results</title></head>"
               "<body><h1>Transfer results (%, frozen features + shallow classifier)</h1>"
               f"{table.to_html(index=False)}<img alt='results' src='data:image/png;base64,{image}'></body></html>\n",
               out_dir / "results.html")
    summary = {"benchmarks": [r["benchmark"] for r in results], "models": table["Model"].tolist(),
               "files": ["results.md", "results.csv", "results.html", "metrics.json", "results.png"]}
    write_json(summary, out_dir / "summary.json")
    return summary
