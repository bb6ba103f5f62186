"""ESC-50 (Piczak 2015) in its published layout.

```
<root>/audio/<filename>.wav         2,000 five-second clips, 44.1 kHz mono
<root>/meta/esc50.csv               filename,fold,target,category,esc10,src_file,take
```

``target`` is the class index and ``category`` its name; ``fold`` is 1..5, and the published
folds keep the clips cut from one ``src_file`` together. Any number of classes and folds is
read (the demo benchmark uses the same layout with fewer of both); the transfer step then cuts its
validation parts to what the smallest class allows, or refuses a set too small to validate on,
naming ``transfer.val_folds`` (:func:`mmvideos.benchmarks.common.validation_folds_for`), and leaves
Top-5 out with 5 classes or fewer.
"""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING

from mmvideos.benchmarks.common import BenchmarkError, list_files, read_text
from mmvideos.data import storage

if TYPE_CHECKING:
    import pandas as pd

META = "meta/esc50.csv"
COLUMNS = ("filename", "fold", "target", "category", "esc10", "src_file", "take")


def read_esc50(root: str) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Read ESC-50's metadata and check every listed clip exists.

    Returns:
        (table with clip_id, uri, labels, fold, src_file; class names by target index)

    Raises:
        BenchmarkError: missing ``meta/esc50.csv`` or ``audio/``, a missing column, a bad row
            (non-integer fold/target, a target named two ways, a duplicate filename) or a
            listed clip absent from ``audio/``.
    """
    import pandas as pd

    meta_uri = storage.join(root, META)
    reader = csv.DictReader(io.StringIO(read_text(root, META)))
    absent = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if absent:
        raise BenchmarkError(f"{meta_uri}: missing column(s) {absent}; expected {list(COLUMNS)}")
    audio = list_files(root, "audio")
    rows, names = [], {}
    for line, row in enumerate(reader, start=2):
        where = f"{meta_uri}: line {line}"
        filename = row["filename"].strip()
        try:
            fold, target = int(row["fold"]), int(row["target"])
        except ValueError as exc:
            raise BenchmarkError(f"{where}: fold and target must be integers, got {row['fold']!r}, "
                                 f"{row['target']!r}") from exc
        if target < 0:
            raise BenchmarkError(f"{where}: negative target {target}")
        category = row["category"].strip()
        if names.setdefault(target, category) != category:
            raise BenchmarkError(f"{where}: target {target} is {category!r} here but {names[target]!r} before")
        uri = audio.get(f"audio/{filename}")
        if uri is None:
            raise BenchmarkError(f"{where}: clip {filename!r} is not in {storage.join(root, 'audio')}")
        rows.append({"clip_id": filename.rsplit(".", 1)[0], "uri": uri, "labels": [target],
                     "fold": str(fold), "src_file": row["src_file"].strip()})
    if not rows:
        raise BenchmarkError(f"{meta_uri}: no clips listed")
    table = pd.DataFrame(rows)
    duplicated = table["clip_id"][table["clip_id"].duplicated()]
    if len(duplicated):
        raise BenchmarkError(f"{meta_uri}: filename {duplicated.iloc[0]!r} listed twice")
    gaps = sorted(set(range(max(names) + 1)) - set(names))
    if gaps:
        raise BenchmarkError(f"{meta_uri}: targets {gaps} have no clip; targets must be 0..{max(names)}")
    return table, tuple(names[i] for i in range(len(names)))
