"""Measurements: every benchmark of the project (``make bench``, ``make bench-gpu``).

``run`` (``mmvideos bench``: each figure beside its reference, training throughput, the report),
``figures`` (log-mel, loader, decoding, frames, visual annotator), ``annotators`` (annotator
throughput), ``demo`` (the warm demo run timed per task), ``scale`` (``mmvideos bench --scale``:
the map stages at growing corpus sizes; ``reduce`` its reduce side), ``leakage`` (``--leakage``:
the leakage guard's detection table), ``determinism`` (``--determinism``: what pinned pretraining
costs and how far apart its runs land) and ``gpu`` (``python -m mmvideos.bench.gpu``).
Nothing in the pipeline imports this package.
"""

from __future__ import annotations

import json
from pathlib import Path

#: The reduce side's steps (:mod:`mmvideos.bench.reduce`), in the order they run; here so that the
#: command line names them without loading the benchmark.
REDUCE_STEPS = ("gather_clips", "gather_visual", "gather_audio", "merge_labels", "label_drift", "pack",
                "pretrain_start", "near_duplicates")


def save(report: dict, table: str, output: str | Path, name: str) -> None:
    """Write a benchmark's ``<name>.json`` (kept in git) and ``<name>.md`` under ``output``; print the table."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    (output / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
    (output / f"{name}.md").write_text(table + "\n")
    print(table)
