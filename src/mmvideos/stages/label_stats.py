"""Label statistics like the paper's Fig. 2: plots plus a Markdown and an HTML summary.

Written by ``merge_labels`` next to its tables:

* ``samples_per_category.png``: per modality, clips per category sorted by frequency, on a
  log2 axis (the paper's Fig. 2 shows the same long tail).
* ``labels_per_clip.png``: histograms of visual, audio and merged labels per clip.
* ``top_categories.png``: the most frequent categories, coloured by modality.
* ``stats.md``: the numbers and tables, naming the PNGs next to it.
* ``stats.html``: the same, self-contained (the PNGs inlined), for a KFP ``HTML`` artifact.
"""

from __future__ import annotations

import base64
import html
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mmvideos.data.atomic import atomic_path, write_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

COLOURS = {"visual": "tab:blue", "audio": "tab:orange", "all": "tab:green"}
PLOTS = {
    "samples_per_category.png": "Samples per category (log2 scale)",
    "labels_per_clip.png": "Labels per clip",
    "top_categories.png": "Most frequent categories",
}


def _figure(width: float, height: float) -> Figure:
    # The Agg canvas directly, without pyplot: no global figure state and no display needed.
    # Imported here: matplotlib costs a second at import, and only the plots need it.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, target: Path) -> None:
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")


def plot_samples_per_category(vocabulary: pd.DataFrame, target: Path) -> None:
    """Clips per category, sorted, log2 y axis, one panel per modality.

    Drawn as one filled step outline per panel, not a bar per category: the paper's 11,693
    categories would be as many patches (seconds to draw), and the picture is the same.
    """
    fig = _figure(11, 3.8)
    axes = fig.subplots(1, 2)
    for ax, modality in zip(axes, ("visual", "audio")):
        counts = np.sort(vocabulary.loc[vocabulary["modality"] == modality, "count"].to_numpy())[::-1]
        if counts.size:
            # every used category has >= 1 clip: the steps stand on 2^-1, below the lowest count
            ax.stairs(counts, np.arange(counts.size + 1) - 0.5, fill=True, baseline=0.5, color=COLOURS[modality])
            ax.set_yscale("log", base=2)
        ax.set_title(f"{modality}: {counts.size} categories used")
        ax.set_xlabel("category (sorted by frequency)")
        ax.set_ylabel("clips")
    _save(fig, target)


def plot_labels_per_clip(per_clip: dict[str, Counter[int]], target: Path) -> None:
    """Histograms of how many labels a clip carries, per modality and merged.

    ``per_clip`` holds, for ``visual``, ``audio`` and ``all``, clips by their number of labels:
    the counts ``merge_labels`` keeps as it streams, so no table of labels is needed.
    """
    fig = _figure(7, 3.8)
    ax = fig.subplots()
    top = max([k for counts in per_clip.values() for k, n in counts.items() if n] + [1])
    bins = np.arange(top + 2) - 0.5
    for name in ("visual", "audio", "all"):
        lengths = np.arange(top + 1)
        ax.hist(lengths, bins=bins, weights=[per_clip[name].get(k, 0) for k in lengths], alpha=0.6, label=name,
                color=COLOURS[name])
    ax.set_xlabel("labels per clip")
    ax.set_ylabel("clips")
    ax.legend()
    _save(fig, target)


def plot_top_categories(top: pd.DataFrame, target: Path) -> None:
    """Horizontal bars of the most frequent categories, most frequent on top."""
    fig = _figure(7, 0.25 * len(top) + 1.2)
    ax = fig.subplots()
    ax.barh(np.arange(len(top))[::-1], top["count"], color=[COLOURS[m] for m in top["modality"]])
    ax.set_yticks(np.arange(len(top))[::-1], [f"{n} ({m})" for n, m in zip(top["name"], top["modality"])], fontsize=8)
    ax.set_xlabel("clips")
    _save(fig, target)


def _markdown_table(frame: pd.DataFrame) -> str:
    head = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * len(frame.columns) + "\n"
    return head + "".join("| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |\n"
                          for row in frame.itertuples(index=False))


def write_label_stats(per_clip: dict[str, Counter[int]], vocabulary: pd.DataFrame, summary: dict,
                      out_dir: str | Path, top_n: int = 30) -> list[str]:
    """Write the plots, ``stats.md`` and ``stats.html`` into ``out_dir``; returns the file names.

    Everything comes from counts (the vocabulary's clips per category, ``per_clip``'s clips per
    number of labels, :func:`plot_labels_per_clip`), never from the label table's rows.
    """
    out_dir = Path(out_dir)
    top = vocabulary.sort_values(["count", "index"], ascending=[False, True]).head(top_n)
    plot_samples_per_category(vocabulary, out_dir / "samples_per_category.png")
    plot_labels_per_clip(per_clip, out_dir / "labels_per_clip.png")
    plot_top_categories(top, out_dir / "top_categories.png")

    numbers = pd.DataFrame([
        ("clips", summary["clips"]),
        ("vocabulary used / total", f"{summary['vocabulary_used']} / {summary['vocabulary_total']}"),
        ("utilisation", f"{100 * summary['utilisation']:.2f}%"),
        ("visual categories used / total",
         f"{summary['classes_used'].get('visual', 0)} / {summary['classes_total'].get('visual', 0)}"),
        ("audio categories used / total",
         f"{summary['classes_used'].get('audio', 0)} / {summary['classes_total'].get('audio', 0)}"),
        ("mean visual labels per clip", summary["mean_visual_labels_per_clip"]),
        ("mean audio labels per clip", summary["mean_audio_labels_per_clip"]),
        ("mean labels per clip (merged)", summary["mean_labels_per_clip"]),
    ], columns=["statistic", "value"])
    top_table = top[["id", "name", "modality", "count"]]

    markdown = ["# Label statistics\n\n", _markdown_table(numbers), f"\n## Top {len(top)} categories\n\n",
                _markdown_table(top_table)]
    markdown += [f"\n## {title}\n\n![{title}]({name})\n" for name, title in PLOTS.items()]
    write_text("".join(markdown), out_dir / "stats.md")

    images = "".join(
        f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='data:image/png;base64,"
        f"{base64.b64encode((out_dir / name).read_bytes()).decode()}'>"
        for name, title in PLOTS.items())
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>Label statistics</title></head><body>"
            "<h1>Label statistics</h1>" + numbers.to_html(index=False)
            + f"<h2>Top {len(top)} categories</h2>" + top_table.to_html(index=False) + images + "</body></html>")
    write_text(page, out_dir / "stats.html")
    return [*PLOTS, "stats.md", "stats.html"]
