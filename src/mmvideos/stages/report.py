"""Stage: report, one results table over every transfer benchmark and model (paper Tables 2-4).

Reads the transfer results (each transfer output's ``metrics.json``, or collections of them),
merges the transfers of one architecture pre-trained with several seeds
(:func:`mmvideos.evaluation.results.merge_pretrain_seeds`) and writes to ``out_dir``:

* ``results.md`` and ``results.csv``: rows = models (``<arch> pretrained`` for every
  architecture of ``pretrain.models``, any released baseline by its name, ``<arch> random
  init``, ``log-mel stats``, the 1-NN controls ``<arch> pretrained 1-NN`` and ``log-mel stats
  1-NN``, and, beside the real benchmarks, the paper's own reference rows, e.g. human listeners on
  ESC-50, with only their ``(paper)`` figures), columns = Top-1, Top-5, mAP and AUC per benchmark,
  in percent; then ``Pooling``: how each row's clip vector was made (``concat``, ``mean_max`` or
  ``mean_std`` for the log-mel statistics). A benchmark goes by its own name and size
  (:mod:`mmvideos.benchmarks.naming`: "demo percussion (8 classes, 52 clips)"), and the paper's
  figures stand in ``(paper)`` columns beside ours (:mod:`mmvideos.evaluation.paper_results`) only
  for the real benchmark. In ``results.md`` each of our figures carries its 95% bootstrap interval
  (and ``± sd`` over seeds where there are several), the pairs of rows are said in words to differ
  beyond noise or within it, and a spread table gives per row the sd over splits, n and each seed's
  figure; ``results.csv`` holds the plain figures;
* ``results.json``: the same table as data, every figure with its interval, fold and seed spread,
  n, and the paired comparisons (:func:`mmvideos.evaluation.results.structured`), for any page to render;
* ``metrics.json``: flat keys DVC can track and diff, e.g. ``esc50.vggish_fc.pretrained.top1``
  (fractions);
* ``results.html``: the table, the verdicts and the plot in one self-contained page (for the Kubeflow UI);
* ``results.png``: grouped bars of Top-1 (single-label benchmarks) or mAP (AudioSet) with their
  95% intervals, the paper's figure as a tick on each bar;
* ``summary.json``.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import pandas as pd

from mmvideos.benchmarks.naming import published_name
from mmvideos.cluster.kfp_io import markdown_table
from mmvideos.data import storage
from mmvideos.data.atomic import atomic_path, write_json, write_text
from mmvideos.evaluation.metrics import METRICS
from mmvideos.evaluation.paper_results import PAPER_METRICS, PAPER_ORDER, PAPER_REFERENCES, paper_value
from mmvideos.evaluation.results import comparisons, merge_pretrain_seeds, structured

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


def _short(result: dict) -> str:
    """The benchmark's column prefix: its own name (:mod:`mmvideos.benchmarks.naming`), or the published one."""
    return result.get("name") or published_name(result["benchmark"])


def _paper(result: dict) -> tuple[str, ...]:
    """The paper's metrics to show beside a result: only beside the real benchmark (``paper`` in its metrics)."""
    return PAPER_METRICS.get(result["benchmark"], ()) if result.get("paper") else ()


def results_table(results: list[dict]) -> pd.DataFrame:
    """One row per model, in %: per benchmark its Top-1, Top-5, mAP and AUC, each of the paper's
    figures (:mod:`mmvideos.evaluation.paper_results`) in a ``(paper)`` column beside ours where the
    benchmark is the real one; then ``Pooling``: how the row's clip vector was made (several joined by
    ``/`` if the benchmarks differ). ``table.attrs["details"]`` holds per ``(row, column)`` the transfer's
    row (interval, fold and seed spread, n) behind the figure.

    Rows: every architecture pre-trained here (in the paper's order), the released baselines,
    the paper's reference rows for the real benchmarks present (:data:`PAPER_REFERENCES`, paper
    figures only), each architecture with random weights, the log-mel statistics, the 1-NN
    controls. Results of several architectures (the ablation, ``pretrain.models``) make one table.
    """
    rows: dict[str, dict] = {}
    columns: list[str] = []
    details: dict[tuple[str, str], dict] = {}
    for result in results:
        benchmark, arch, title, paper_metrics = result["benchmark"], result.get("arch", ""), _short(result), _paper(result)
        for metric in METRICS:
            ours = f"{title} {METRIC_TITLES[metric]}"
            wanted = [ours] + ([f"{ours} (paper)"] if metric in paper_metrics else [])
            columns += [c for c in wanted if c not in columns]
        for row in result["rows"]:
            label = _model_label(row["model"], arch)
            entry = rows.setdefault(label, {"order": _order(label, row["model"], arch), "cells": {}, "pooling": []})
            paper = _paper_row(row["model"], arch)
            for metric in METRICS:
                value = row.get(metric)
                entry["cells"][f"{title} {METRIC_TITLES[metric]}"] = (
                    None if value is None else round(100 * value, 1))  # None: not meaningful here (Top-5 of <= 5 classes)
                details[label, f"{title} {METRIC_TITLES[metric]}"] = {"metric": metric, **row}
                if metric in paper_metrics:
                    entry["cells"][f"{title} {METRIC_TITLES[metric]} (paper)"] = (
                        paper_value(benchmark, paper, metric) if paper else None)
            if row.get("pooling") and row["pooling"] not in entry["pooling"]:
                entry["pooling"].append(row["pooling"])
        for label, figures in (PAPER_REFERENCES.get(benchmark, {}) if paper_metrics else {}).items():
            # in the paper's order: its tables list them first
            order = (GROUPS["reference"], REFERENCE_ORDER.index(label), label)
            entry = rows.setdefault(label, {"order": order, "cells": {}, "pooling": []})
            entry["cells"] |= {f"{title} {METRIC_TITLES[m]} (paper)": v for m, v in figures.items()}
    ordered = sorted(rows.items(), key=lambda item: item[1]["order"])
    frame = pd.DataFrame([{"Model": label, **{c: entry["cells"].get(c) for c in columns},
                           "Pooling": "/".join(entry["pooling"])} for label, entry in ordered])
    frame.attrs["details"] = details
    return frame


def _cell(value: float, row: dict) -> str:
    """A figure for people: ``53.6 [40.2, 66.0]``, with ``± sd`` over seeds where there are several."""
    metric = row["metric"]
    text = f"{value:.1f}"
    sd = row.get("seed_sd", {}).get(metric)
    if sd is not None:
        text += f" ± {100 * sd:.1f}"
    ci = row.get("ci", {}).get(metric)
    return text + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


def _display(table: pd.DataFrame) -> pd.DataFrame:
    """The table for people: our figures with their 95% interval (and seed sd), a figure the paper does
    not give a dash, not ``nan``."""
    shown = table.astype(object).where(table.notna(), "–")
    for (label, column), row in table.attrs.get("details", {}).items():
        at = shown.index[shown["Model"] == label]
        if len(at) and column in shown.columns and shown.at[at[0], column] != "–":
            shown.at[at[0], column] = _cell(table.at[at[0], column], row)
    return shown


def _plot(table: pd.DataFrame, benchmarks: list[tuple[str, str]], target: Path) -> None:
    """Grouped bars of each row's headline metric per benchmark (``(column prefix, benchmark)``) with its 95%
    interval; the paper's figure as a tick."""
    # the object API needs no display backend (pipeline nodes have none); imported where drawn
    from matplotlib.figure import Figure

    details = table.attrs.get("details", {})
    fig = Figure(figsize=(max(7.5, 2.4 + 2.6 * len(benchmarks)), 4.2))  # wide enough for its title
    ax = fig.subplots()
    width = 0.8 / len(table)
    columns = [f"{short} {METRIC_TITLES[HEADLINE.get(b, 'top1')]}" for short, b in benchmarks]
    for i, (_, row) in enumerate(table.iterrows()):
        positions = [j + (i - (len(table) - 1) / 2) * width for j in range(len(benchmarks))]
        heights = [row.get(c) if pd.notna(row.get(c)) else 0.0 for c in columns]
        errors = [[0.0, 0.0] if not (d := details.get((row["Model"], c))) or not d.get("ci", {}).get(d["metric"])
                  else [h - 100 * d["ci"][d["metric"]][0], 100 * d["ci"][d["metric"]][1] - h]
                  for c, h in zip(columns, heights)]
        ax.bar(positions, heights, width, label=row["Model"], yerr=[[max(e[0], 0) for e in errors],
                                                                     [max(e[1], 0) for e in errors]],
               error_kw={"elinewidth": 0.8, "capsize": 1.5})
        paper = [row.get(f"{c} (paper)") for c in columns]
        shown = [(x, v) for x, v in zip(positions, paper) if v is not None and pd.notna(v)]
        if shown:
            ax.scatter(*zip(*shown), marker="_", s=260, linewidths=2.5, color="black", zorder=3)
    ax.set_xticks(range(len(benchmarks)))
    ax.set_xticklabels([f"{short}\n({METRIC_TITLES[HEADLINE.get(b, 'top1')]})" for short, b in benchmarks])
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("Transfer from frozen features, 95% bootstrap intervals (ticks: the paper's figure)", fontsize=9)
    fig.tight_layout()
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=120)


def differences(results: list[dict]) -> list[str]:
    """In words, per benchmark on its headline metric: each pre-trained row against every other row, and
    random init against the log-mel statistics, as a difference beyond noise or within it (the paired
    bootstrap interval of the difference excludes or covers 0)."""
    lines = []
    for result in results:
        arch, metric = result.get("arch", ""), HEADLINE.get(result["benchmark"], "top1")
        label = lambda model, arch=arch: _model_label(model, arch)  # noqa: E731
        key_rows = {label("pretrained"), label("random_init")}
        for c in comparisons(result, label):
            if c["metric"] != metric or not ({c["a"], c["b"]} & {label("pretrained")} or
                                             {c["a"], c["b"]} == {label("random_init"), label("logmel_stats")}):
                continue
            a, b, diff, (low, high) = c["a"], c["b"], 100 * c["difference"], (100 * v for v in c["ci"])
            if c["a"] not in key_rows and c["b"] in key_rows:
                a, b, diff, (low, high) = b, a, -diff, (-high, -low)
            verdict = "within noise" if c["within_noise"] else "a difference beyond noise"
            lines.append(f"- {_short(result)} {METRIC_TITLES[metric]}: {a} minus {b} = {diff:+.1f} points, 95% "
                         f"interval [{low:+.1f}, {high:+.1f}]: {verdict}.")
    return lines


def _about(results: list[dict]) -> list[str]:
    """One line per benchmark: its name and size, splits, seeds and how the intervals were drawn."""
    lines = []
    for result in results:
        boot = result.get("bootstrap") or {}
        seeds = max((row.get("n", {}).get("seeds", 1) for row in result["rows"]), default=1)
        splits = next((row["n"]["splits"] for row in result["rows"] if row.get("n")), None)
        lines.append(f"- {result.get('title') or _short(result)}: " + (f"{splits} split(s), " if splits else "")
                     + f"up to {seeds} seed(s) per row"
                     + (f"; 95% intervals (percentile, centred on the figure) from {boot['resamples']:,} bootstrap resamples of "
                        f"the test clips by {boot['unit']} within {boot['strata']}" if boot
                        else "; no intervals (an older transfer)")
                     + ("" if result.get("paper") else "; not the paper's benchmark, so no (paper) column") + ".")
    return lines


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
    results = merge_pretrain_seeds(load_metrics(metrics_dirs))
    table = results_table(results)
    benchmarks = list(dict.fromkeys((_short(r), r["benchmark"]) for r in results))
    write_text(table.to_csv(index=False), out_dir / "results.csv")
    write_json(structured(results, _model_label, tuple(METRICS)), out_dir / "results.json")
    words, about, caveats, shown = differences(results), _about(results), _caveats(results), _display(table)
    intro = ("# Transfer results (%, frozen features + shallow classifier)\n\n" + "\n".join(about) + "\n\n"
             "Each figure: the mean over the protocol's splits (and seeds: `± sd` over them where there are "
             "several) with its 95% bootstrap interval in brackets.\n\n")
    noise = ("\n## Within noise or not\n\nA difference between two rows is within noise when the 95% interval of "
             "their paired bootstrap difference (the same resampled clips for both) covers 0.\n\n"
             + "\n".join(words) + "\n") if words else ""
    papers = any(c.endswith("(paper)") for c in table.columns)
    write_text(intro + markdown_table(shown)
               + ("\n(paper): the paper's Tables 2-4, without intervals (it gives none); – where it gives no figure (or "
                  "where it means nothing, as Top-5 over 5 classes or fewer).\n"
                  if papers else "\n– where a row has no figure (or where it means nothing, as Top-5 over 5 classes or "
                  "fewer).\n") + caveats + noise + _spread_section(results), out_dir / "results.md")
    write_json(flat_metrics(results), out_dir / "metrics.json")
    _plot(table, benchmarks, out_dir / "results.png")
    image = base64.b64encode((out_dir / "results.png").read_bytes()).decode()
    listed = "".join(f"<li>{html.escape(line[2:])}</li>" for line in about)
    said = "".join(f"<li>{html.escape(line[2:])}</li>" for line in words)
    write_text("<!doctype html><html><head><meta charset='utf-8'><title>mmvideos transfer results</title></head>"
               f"<body><h1>Transfer results (%, frozen features + shallow classifier)</h1><ul>{listed}</ul>"
               f"{shown.to_html(index=False)}<p>Brackets: 95% bootstrap intervals.</p>"
               + (f"<h2>Within noise or not</h2><ul>{said}</ul>" if said else "")
               + "".join(f"<p>{html.escape(line[2:])}</p>" for line in caveats.split("\n") if line)
               + f"<img alt='results' src='data:image/png;base64,{image}'></body></html>\n",
               out_dir / "results.html")
    summary = {"benchmarks": [b for _, b in benchmarks], "names": [r.get("title") or _short(r) for r in results],
               "models": table["Model"].tolist(),
               "files": ["results.md", "results.csv", "results.json", "results.html", "metrics.json", "results.png"]}
    write_json(summary, out_dir / "summary.json")
    return summary


def _spread_section(results: list[dict]) -> str:
    """Per benchmark, the headline metric's spread: sd over the splits, n, and each seed's figure."""
    parts = []
    for result in results:
        metric = HEADLINE.get(result["benchmark"], "top1")
        lines = [f"| Model | {METRIC_TITLES[metric]} | sd over splits | test clips | classes | splits | seeds |",
                 "|---|---|---|---|---|---|---|"]
        for row in result["rows"]:
            n, sd = row.get("n", {}), row.get("fold_sd", {}).get(metric)
            seeds = ", ".join(f"{100 * s[metric]:.1f}" for s in row.get("seeds", []))
            lines.append(f"| {_model_label(row['model'], result.get('arch', ''))} | {100 * row[metric]:.1f} | "
                         f"{'–' if sd is None else f'{100 * sd:.1f}'} | {n.get('clips', '–')} | {n.get('classes', '–')} | "
                         f"{n.get('splits', '–')} | {len(row.get('seeds', [])) or '–'}: {seeds or '–'} |")
        parts.append(f"\n## Spread: {result.get('title') or _short(result)}, {METRIC_TITLES[metric]}\n\n"
                     + "\n".join(lines) + "\n")
    return "".join(parts)
