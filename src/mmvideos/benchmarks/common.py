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


#: A Top-5 accuracy over this many classes or fewer says nothing (over 5 it is 100 % by definition
#: at 5, and nearly so just above chance below): it is left out of the results.
TOP5_MIN_CLASSES = 6


def validation_folds_for(table, protocol: tuple[Split, ...], multi_label: bool, wanted: int) -> tuple[int, str]:
    """How many validation parts the classifier's training clips can be cut into, at most ``wanted``
    (``transfer.val_folds``), and a note saying what was adapted ("" when nothing was).

    A part must hold every class (single-label sets are stratified) and whole groups (ESC-50's
    ``src_file``): over each split's training folds, the smallest class and the number of groups
    bound the parts. Fewer than 2 parts cannot choose anything: :class:`BenchmarkError` names
    the setting and the minimum.
    """
    folds = table["fold"].to_numpy()
    groups = table["src_file"] if "src_file" in table else table["clip_id"]
    possible = wanted
    for split in protocol:
        train = table[[fold in split.train for fold in folds]]
        bound = groups[train.index].nunique()
        if not multi_label:
            counts = train["labels"].map(lambda labels: labels[0]).value_counts()
            bound = min(bound, int(counts.min()) if len(counts) else 0)
        possible = min(possible, bound)
    if possible < 2:
        raise BenchmarkError(
            f"too few clips for a validation split: transfer.val_folds needs at least 2 clips of every class in "
            f"the training folds of each split (from different source files), the smallest class has {possible}; "
            "add clips, so that every class keeps at least 2 outside each test fold (e.g. one per fold in 3 or more "
            "folds)")
    if possible == wanted:
        return wanted, ""
    return possible, (f"transfer.val_folds {wanted} lowered to {possible}: the smallest class has {possible} clips "
                      f"in a split's training folds")
