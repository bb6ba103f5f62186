"""TUT Urban Acoustic Scenes 2018, Task 1A development set, in its published layout.

```
<root>/audio/<scene>-<city>-<location>-<segment>-a.wav    10-s binaural clips, 48 kHz
<root>/meta.csv                                          filename, scene_label, identifier, source_label
<root>/evaluation_setup/fold1_train.csv                  filename, scene_label
<root>/evaluation_setup/fold1_evaluate.csv               filename, scene_label
```

All files are tab-separated; filenames are relative to the root (``audio/...``). The header row
(``filename<TAB>scene_label...``) is optional, as it is in the DCASE releases. The protocol
trains on ``fold1_train`` and reports on ``fold1_evaluate``; class indices follow the sorted
scene labels of ``meta.csv``.
"""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING

from mmvideos.benchmarks.common import BenchmarkError, list_files, read_text
from mmvideos.data import storage

if TYPE_CHECKING:
    import pandas as pd

META = "meta.csv"
SETUP = {"train": "evaluation_setup/fold1_train.csv", "evaluate": "evaluation_setup/fold1_evaluate.csv"}


def _rows(root: str, relative: str, width: int) -> list[tuple[int, list[str]]]:
    """(line number, first ``width`` fields) of a tab-separated file, header and blanks skipped."""
    uri = storage.join(root, relative)
    rows = []
    for line, fields in enumerate(csv.reader(io.StringIO(read_text(root, relative)), delimiter="\t"), start=1):
        if not fields or not "".join(fields).strip():
            continue
        if line == 1 and fields[0].strip() == "filename":
            continue
        if len(fields) < width:
            raise BenchmarkError(f"{uri}: line {line}: expected {width} tab-separated fields, got {len(fields)} "
                                 f"({fields!r})")
        rows.append((line, [f.strip() for f in fields[:width]]))
    if not rows:
        raise BenchmarkError(f"{uri}: no rows")
    return rows


def read_tut2018(root: str) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Read the Task 1A development set's fold-1 setup and check every listed clip exists.

    Returns:
        (table with clip_id, uri, labels, fold in {"train", "evaluate"}; sorted scene names)

    Raises:
        BenchmarkError: a missing ``meta.csv``, setup file or ``audio/`` folder, a short row, a
            scene label that ``meta.csv`` does not know or that disagrees with it, a clip in
            both folds, or a listed clip absent from ``audio/``.
    """
    import pandas as pd

    meta = {name: label for _, (name, label) in _rows(root, META, 2)}
    classes = tuple(sorted(set(meta.values())))
    index = {label: i for i, label in enumerate(classes)}
    audio = list_files(root, "audio")
    rows, seen = [], {}
    for fold, relative in SETUP.items():
        uri = storage.join(root, relative)
        for line, (name, label) in _rows(root, relative, 2):
            where = f"{uri}: line {line}"
            if meta.get(name) != label:
                known = f"{meta[name]!r} in {META}" if name in meta else f"not in {META}"
                raise BenchmarkError(f"{where}: {name!r} labelled {label!r} but {known}")
            if name in seen:
                raise BenchmarkError(f"{where}: {name!r} is already in the {seen[name]} fold")
            seen[name] = fold
            if name not in audio:
                raise BenchmarkError(f"{where}: clip {name!r} is not in {storage.join(root, 'audio')}")
            clip_id = name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
            rows.append({"clip_id": clip_id, "uri": audio[name], "labels": [index[label]], "fold": fold})
    return pd.DataFrame(rows), classes
