"""Atomic writes: a reader sees the old file or the new one, never half of one.

Every table and shard the pipeline writes goes through here: the bytes go to a temporary file
in the destination folder, are flushed to disk, then ``os.replace``-d over the target (and the
rename itself flushed, by syncing the folder).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pandas as pd


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success it replaces ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are meant to be shared
        replace_durably(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def replace_durably(tmp: str | Path, target: str | Path) -> None:
    """``os.replace(tmp, target)`` with ``tmp``'s bytes and then the rename flushed to disk, so
    that after a crash ``target`` is the old file or the whole new one, never an empty one."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    folder = os.open(Path(target).parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


@contextlib.contextmanager
def atomic_open(target: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """``open`` for writing, atomically replacing ``target`` when the block succeeds."""
    with atomic_path(target) as tmp, open(tmp, mode) as fh:
        yield fh


#: Rows per parquet row group. A reader of a row group decodes its column chunks whole, so
#: whole-corpus steps that stream tables (:mod:`mmvideos.data.tables`) hold about this many rows
#: per file they read at once, however long the table.
ROW_GROUP_ROWS = 8_192


def write_parquet(df: pd.DataFrame, target: str | Path) -> Path:
    """Write ``df`` to ``target`` as parquet (no index) in row groups of :data:`ROW_GROUP_ROWS`, atomically."""
    with atomic_path(target) as tmp:
        df.to_parquet(tmp, index=False, row_group_size=ROW_GROUP_ROWS)
    return Path(target)


def write_json(obj: Any, target: str | Path) -> Path:
    """Write ``obj`` as pretty, key-sorted JSON, atomically."""
    with atomic_open(target, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True, default=str)
        fh.write("\n")
    return Path(target)


def write_text(text: str, target: str | Path) -> Path:
    """Write ``text`` to ``target`` atomically."""
    with atomic_open(target, "w") as fh:
        fh.write(text)
    return Path(target)
