"""What a benchmark is called in a report: its own name and size, the paper's name only for the real one.

A folder in ESC-50's layout is not ESC-50: the report names it by what it is, and puts the
paper's figures beside it only when it has the real benchmark's size (:data:`REAL`: ESC-50's 2,000
clips of 50 classes, TUT 2018 development's 8,640 clips of 10 classes, AudioSet's 527 classes over
the 42,531 clips its balanced-train and eval lists name, within 1% for list versions). The demo
benchmark is "demo percussion"; any other folder goes by its folder name. Sizes come with the name:
``"demo percussion (8 classes, 52 clips)"``.
"""

from __future__ import annotations

import dataclasses

#: Benchmark -> (display name, classes, clips listed) of the published benchmark.
REAL = {"esc50": ("ESC-50", 50, 2000), "tut2018": ("TUT 2018", 10, 8640), "audioset": ("AudioSet", 527, 42531)}
#: The name of the built-in demo benchmark (:mod:`mmvideos.demo.benchmark`).
DEMO = "demo percussion"


def published_name(benchmark: str) -> str:
    """The published benchmark's name (``esc50`` -> ``ESC-50``), or the key itself for any other."""
    return REAL.get(benchmark, (benchmark,))[0]


@dataclasses.dataclass(frozen=True)
class BenchmarkName:
    """``short``: the table's column prefix; ``title``: with its size; ``real``: the published benchmark
    (the paper's figures may stand beside it)."""

    short: str
    title: str
    real: bool


def benchmark_name(benchmark: str, root: str, classes: int, clips: int, listed: int | None = None,
                   demo: bool = False) -> BenchmarkName:
    """The name a report gives benchmark ``benchmark`` read from ``root`` with ``classes`` classes and
    ``clips`` clips (``listed``: clips its metadata names, present or not; default ``clips``)."""
    name, real_classes, real_clips = REAL.get(benchmark, (benchmark, None, None))
    listed = clips if listed is None else listed
    real = not demo and classes == real_classes and abs(listed - real_clips) <= 0.01 * real_clips
    short = name if real else DEMO if demo else (root.rstrip("/").rsplit("/", 1)[-1] or name)
    return BenchmarkName(short, f"{short} ({classes:,} classes, {clips:,} clips)", real)
