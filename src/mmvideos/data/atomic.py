"""Atomic writes: a reader sees the old file or the new one, never half of one.

Every table and shard the pipeline writes goes through here: the bytes go to a temporary file
in the destination folder, are flushed to disk, then ``os.replace``-d over the target (and the
rename itself flushed, by syncing the folder).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
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


#: Scratch folders of this program in the system's temporary folder (or a given one) are named
#: ``mmvideos-<what>-<pid>-<random>``: one whose process is gone was left by a kill, and
#: ``mmvideos gc`` removes it (:func:`stale_scratch`).
SCRATCH = re.compile(r"mmvideos-[\w-]+?-(\d+)-[a-z0-9_]{8}")


@contextlib.contextmanager
def scratch_dir(what: str, dir: str | Path | None = None) -> Iterator[str]:
    """A temporary folder for ``what`` that is removed on the way out, named after this process
    so that a folder a kill left behind can be told from one a live run is using."""
    with tempfile.TemporaryDirectory(prefix=f"mmvideos-{what}-{os.getpid()}-", dir=dir) as folder:
        yield folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def stale_scratch(where: str | Path | None = None, delete: bool = False) -> list[tuple[Path, int]]:
    """The scratch folders in ``where`` (the system's temporary folder) whose process no longer
    runs, with their sizes in bytes; removed with ``delete``."""
    found = []
    for folder in Path(where or tempfile.gettempdir()).glob("mmvideos-*"):
        match = SCRATCH.fullmatch(folder.name)
        if match and folder.is_dir() and not _alive(int(match.group(1))):
            size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
            found.append((folder, size))
            if delete:
                shutil.rmtree(folder, ignore_errors=True)
    return sorted(found)
