"""What the benchmark readers share: errors, splits, and file access for local or gs:// roots."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from mmvideos.data import storage

#: Audio file extensions the readers accept (PyAV decodes them all).
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aif", ".aiff")


class BenchmarkError(ValueError):
    """A benchmark folder that does not have the expected layout; the message names the file/row."""


@dataclasses.dataclass(frozen=True)
class Split:
    """One train/report run of a protocol: the folds to train on and the folds to report on."""

    name: str
    train: tuple[str, ...]
    test: tuple[str, ...]


def read_text(root: str, relative: str) -> str:
    """The text of ``root/relative``; a missing file raises :class:`BenchmarkError` naming it."""
    uri = storage.join(root, relative)
    missing: tuple[type[Exception], ...] = (FileNotFoundError,)
    if storage.is_gcs(uri):
        from google.api_core.exceptions import NotFound

        missing = (FileNotFoundError, NotFound)
    try:
        with storage.local_copy(uri) as path:
            return Path(path).read_text(encoding="utf-8-sig")
    except missing as exc:
        raise BenchmarkError(f"missing file {uri}") from exc


def list_files(root: str, folder: str) -> dict[str, str]:
    """Files under ``root/folder``, recursively: ``{path relative to root: uri}``."""
    base = storage.join(root, folder)
    if storage.is_gcs(root):
        prefix = root.rstrip("/") + "/"
        return {uri[len(prefix):]: uri for uri in storage.list_gcs(base.rstrip("/") + "/")}
    if not Path(base).is_dir():
        raise BenchmarkError(f"missing folder {base}")
    found = {}
    for dirpath, _, names in os.walk(base):
        for name in names:
            path = Path(dirpath) / name
            found[path.relative_to(root).as_posix()] = str(path)
    return found
