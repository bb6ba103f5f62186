"""AudioSet (Gemmeke et al. 2017): the published CSVs plus a folder of downloaded clips.

```
<root>/class_labels_indices.csv      index,mid,display_name          (header row, 527 classes)
<root>/balanced_train_segments.csv   3 '#' comment lines, then: YTID, start_seconds, end_seconds, "mid1,mid2"
<root>/eval_segments.csv             same format
<root>/audio/**/<clip>               the clips, in any sub-folders
```

A clip file is matched to its segment by name: the stem is the 11-character YouTube id,
optionally prefixed by ``Y`` (as in PANNs' downloads) and optionally followed by ``_<start>``
(start second as an integer or as written in the CSV, e.g. ``_30`` or ``_30.000``). Extensions:
wav, flac, mp3, ogg, opus, m4a. YouTube takes videos down, so every copy of AudioSet lacks some
clips: a segment without a file is counted in ``missing`` and left out, not an error.
"""

from __future__ import annotations

import csv
import io
import re
from typing import TYPE_CHECKING

from mmvideos.benchmarks.common import AUDIO_EXTENSIONS, BenchmarkError, list_files, read_text
from mmvideos.data import storage

if TYPE_CHECKING:
    import pandas as pd

LABELS = "class_labels_indices.csv"
SEGMENTS = {"balanced_train": "balanced_train_segments.csv", "eval": "eval_segments.csv"}
_YTID = 11
_START = re.compile(r"^_(\d+(?:\.\d+)?)$")


def read_class_labels(root: str) -> tuple[tuple[str, ...], dict[str, int]]:
    """``class_labels_indices.csv`` -> (display names by index, {mid: index})."""
    uri = storage.join(root, LABELS)
    reader = csv.DictReader(io.StringIO(read_text(root, LABELS)))
    absent = [c for c in ("index", "mid", "display_name") if c not in (reader.fieldnames or [])]
    if absent:
        raise BenchmarkError(f"{uri}: missing column(s) {absent}; expected index,mid,display_name")
    names, mids = {}, {}
    for line, row in enumerate(reader, start=2):
        try:
            index = int(row["index"])
        except ValueError as exc:
            raise BenchmarkError(f"{uri}: line {line}: index {row['index']!r} is not an integer") from exc
        names[index], mids[row["mid"].strip()] = row["display_name"].strip(), index
    if sorted(names) != list(range(len(names))) or not names:
        raise BenchmarkError(f"{uri}: indices must run 0..n-1 without gaps")
    return tuple(names[i] for i in range(len(names))), mids


def read_segments(root: str, relative: str, mids: dict[str, int]) -> list[tuple[str, float, list[int]]]:
    """A segments CSV -> [(YouTube id, start second, class indices)]."""
    uri = storage.join(root, relative)
    segments = []
    text = read_text(root, relative)
    for line, fields in enumerate(csv.reader(io.StringIO(text), skipinitialspace=True), start=1):
        if not fields or fields[0].startswith("#"):
            continue
        where = f"{uri}: line {line}"
        if len(fields) != 4:
            raise BenchmarkError(f"{where}: expected YTID, start_seconds, end_seconds, \"labels\"; got {fields!r}")
        ytid, start, _, labels = (f.strip() for f in fields)
        if len(ytid) != _YTID:
            raise BenchmarkError(f"{where}: {ytid!r} is not an 11-character YouTube id")
        try:
            start_s = float(start)
        except ValueError as exc:
            raise BenchmarkError(f"{where}: start_seconds {start!r} is not a number") from exc
        unknown = [m for m in labels.split(",") if m not in mids]
        if unknown or not labels:
            raise BenchmarkError(f"{where}: label(s) {unknown or [labels]} not in {LABELS}")
        segments.append((ytid, start_s, sorted({mids[m] for m in labels.split(",")})))
    return segments


def index_clips(files: dict[str, str]) -> dict[tuple[str, float | None], str]:
    """Audio files -> {(YouTube id, start second or None when the name has none): uri}."""
    found = {}
    for relative, uri in files.items():
        name = relative.rsplit("/", 1)[-1]
        stem, dot, ext = name.rpartition(".")
        if not dot or f".{ext.lower()}" not in AUDIO_EXTENSIONS:
            continue
        candidates = [stem] + ([stem[1:]] if stem.startswith("Y") else [])
        for candidate in candidates:
            rest = candidate[_YTID:]
            if rest == "":
                found[(candidate, None)] = uri
            elif match := _START.match(rest):
                found[(candidate[:_YTID], float(match.group(1)))] = uri
    return found


def read_audioset(root: str) -> tuple[pd.DataFrame, tuple[str, ...], int]:
    """Read AudioSet's balanced-train and eval segments and match them to clip files.

    Returns:
        (table with clip_id, uri, labels, fold in {"balanced_train", "eval"}; the class display
        names; how many listed segments have no clip file)

    Raises:
        BenchmarkError: a missing CSV or ``audio/`` folder, or a malformed row (named by line).
    """
    import pandas as pd

    classes, mids = read_class_labels(root)
    clips = index_clips(list_files(root, "audio"))
    rows, missing = [], 0
    for fold, relative in SEGMENTS.items():
        for ytid, start, labels in read_segments(root, relative, mids):
            uri = clips.get((ytid, start)) or clips.get((ytid, None))
            if uri is None:
                missing += 1
                continue
            rows.append({"clip_id": f"{ytid}_{int(start * 1000)}", "uri": uri, "labels": labels, "fold": fold})
    table = pd.DataFrame(rows, columns=["clip_id", "uri", "labels", "fold"])
    return table, classes, missing
