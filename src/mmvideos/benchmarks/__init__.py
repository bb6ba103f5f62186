"""The transfer benchmarks of the paper (section 4), read from their real on-disk layouts.

Every reader takes a dataset root (a local folder or a ``gs://`` prefix) and returns a
:class:`Benchmark`: one table with a row per clip, the class names and the evaluation protocol.

The table's columns:

* ``clip_id``: unique within the benchmark (the audio file's stem; for AudioSet the YouTube id
  and start second), safe as a file name;
* ``uri``: where the audio is (local path or ``gs://`` URI);
* ``labels``: list of class indices (one for single-label benchmarks);
* ``fold``: which part of the dataset the clip belongs to (``"1"``..``"5"`` for ESC-50,
  ``"train"``/``"evaluate"`` for TUT 2018, ``"balanced_train"``/``"eval"`` for AudioSet).

``clip_seconds`` is the benchmark's published clip length: 5 s for ESC-50, 10 s for TUT 2018
and AudioSet (some AudioSet clips are shorter).

The protocol is a tuple of :class:`Split`: each names the folds to train on and the folds to
report on. A benchmark's result is the mean over its splits (ESC-50: five leave-one-fold-out
runs; the others: a single split).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from mmvideos.benchmarks.audioset import read_audioset
from mmvideos.benchmarks.common import BenchmarkError, Split
from mmvideos.benchmarks.esc50 import read_esc50
from mmvideos.benchmarks.tut2018 import read_tut2018

if TYPE_CHECKING:
    import pandas as pd

TABLE_COLUMNS = ["clip_id", "uri", "labels", "fold"]


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """One benchmark as read from disk."""

    name: str
    table: pd.DataFrame          # TABLE_COLUMNS
    classes: tuple[str, ...]     # class index -> display name
    protocol: tuple[Split, ...]
    multi_label: bool
    clip_seconds: int            # the published clip length (the paper's transfer input spans it)
    missing: int = 0             # clips listed in the metadata but absent on disk (AudioSet only)


def _esc50(root: str) -> Benchmark:
    table, classes = read_esc50(root)
    folds = sorted(table["fold"].unique(), key=int)
    protocol = tuple(Split(f"fold{f}", tuple(x for x in folds if x != f), (f,)) for f in folds)
    return Benchmark("esc50", table, classes, protocol, multi_label=False, clip_seconds=5)


def _tut2018(root: str) -> Benchmark:
    table, classes = read_tut2018(root)
    return Benchmark("tut2018", table, classes, (Split("fold1", ("train",), ("evaluate",)),), multi_label=False,
                     clip_seconds=10)


def _audioset(root: str) -> Benchmark:
    table, classes, missing = read_audioset(root)
    return Benchmark("audioset", table, classes, (Split("eval", ("balanced_train",), ("eval",)),),
                     multi_label=True, clip_seconds=10, missing=missing)


#: Benchmark name -> reader; the names are the ones ``transfer`` and ``params.yaml`` use.
READERS: dict[str, Callable[[str], Benchmark]] = {"esc50": _esc50, "tut2018": _tut2018, "audioset": _audioset}


def read_benchmark(name: str, root: str | Path) -> Benchmark:
    """Read benchmark ``name`` (``esc50``, ``tut2018`` or ``audioset``) from ``root``.

    Raises:
        BenchmarkError: a metadata file is missing or a row is malformed (the message names it).
        ValueError: an unknown benchmark name.
    """
    if name not in READERS:
        raise ValueError(f"unknown benchmark {name!r}; known: {sorted(READERS)}")
    return READERS[name](str(root).rstrip("/"))


__all__ = ["Benchmark", "BenchmarkError", "READERS", "Split", "TABLE_COLUMNS", "read_benchmark"]
