"""Ingest's fingerprint index on disk, a partition at a time (:func:`mmvideos.stages.overlap.find_matches`).

The inverted index over fingerprint values and the votes it casts both grow with the corpus
(about 24 bytes a posting, three postings a value, ~8 values a second: ~240 kB a video held
at once). Here neither is held whole:

1. postings ``(key, print, position)`` are spilled to ``parts`` files by ``key mod parts``, in
   print order (a key's postings keep the order the in-memory index had: print, then position);
2. each posting file is sorted by key on its own, and its pairs vote ``(pair, offset)`` codes,
   which are spilled to ``parts`` files by pair;
3. each vote file is counted on its own: a pair's votes are all in one file, so its best offset
   and vote count are those the whole index gives.

Memory: one posting or vote file (``PARTITION_POSTINGS`` postings, a few tens of MB) and the
prints being verified, whatever the corpus. The prints themselves are read from a
:class:`PrintStore` on disk when a candidate pair is verified.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from mmvideos.data.atomic import scratch_dir

#: Postings per partition (24 bytes each on disk, about 100 in memory while a partition is paired).
PARTITION_POSTINGS = 2_000_000


class PrintStore(Sequence):
    """Fingerprints (uint32 arrays) in one file on disk, read back one at a time with a ``pread``,
    so holding a corpus' prints costs an offset each."""

    def __init__(self, folder: str | Path, prints: Iterable[np.ndarray] | None = None) -> None:
        """Write ``prints`` to ``folder/prints.u32`` (and their lengths to ``lengths.npy``); with
        ``None``, open the prints written there before."""
        self.path = Path(folder) / "prints.u32"
        if prints is None:
            lengths = np.load(Path(folder) / "lengths.npy")
        else:
            lengths = []
            with open(self.path, "wb") as fh:
                for values in prints:
                    fh.write(np.ascontiguousarray(values, dtype="<u4").tobytes())
                    lengths.append(len(values))
            np.save(Path(folder) / "lengths.npy", np.asarray(lengths, dtype=np.int64))
        self._offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
        self._fd: int | None = None

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        start, end = int(self._offsets[i]), int(self._offsets[i + 1])
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        return np.frombuffer(os.pread(self._fd, 4 * (end - start), 4 * start), dtype="<u4")

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.close()


class _Spill:
    """Arrays appended to ``parts`` files by a partition number each, then read back a file at a time."""

    def __init__(self, folder: Path, name: str, parts: int, columns: int) -> None:
        self.paths = [folder / f"{name}-{k:05d}.bin" for k in range(parts)]
        self.columns, self.parts = columns, parts
        self._files = [open(p, "wb") for p in self.paths]

    def add(self, records: np.ndarray, part: np.ndarray) -> None:
        """Append int64 ``records`` (rows) to their parts, keeping their order within a part."""
        order = np.argsort(part.astype(np.uint16 if self.parts < 2**16 else np.int64), kind="stable")  # radix
        records, part = records[order], part[order]
        cuts = np.searchsorted(part, np.arange(self.parts + 1))
        for k in np.flatnonzero(np.diff(cuts)).tolist():
            self._files[k].write(records[cuts[k]:cuts[k + 1]].tobytes())

    def close(self) -> None:
        for f in self._files:
            f.close()

    def __iter__(self) -> Iterator[np.ndarray]:
        self.close()
        for path in self.paths:
            yield np.fromfile(path, dtype="<i8").reshape(-1, self.columns)
            path.unlink()


def partitions(postings: int) -> int:
    """Partitions for an index of ``postings`` postings."""
    return max(1, math.ceil(postings / PARTITION_POSTINGS))


def best_offsets(postings: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]], count: int, n: int, span: int,
                 pair_groups: Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
                 min_votes: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Per vote partition, the pairs (``doc_a * n + doc_b``) with at least ``min_votes`` votes at their
    best offset, and that offset (module docstring).

    ``postings`` yields ``(key, doc, pos)`` arrays in the in-memory index's order, ``count`` of
    them in all; ``pair_groups(starts, counts, doc)`` gives the posting pairs (indices ``a``, ``b``)
    of a key-sorted partition's groups, as the in-memory index pairs them.
    """
    parts = partitions(count)
    with scratch_dir("prints") as folder:
        spilled = _Spill(Path(folder), "postings", parts, 3)
        for key, doc, pos in _batches(postings, PARTITION_POSTINGS // 4):
            key = key.astype(np.int64)  # keys have at most 30 bits
            spilled.add(np.stack([key, doc, pos], axis=1), key % parts)
        votes = _Spill(Path(folder), "votes", parts, 1)
        width = 2 * span + 1
        for records in spilled:
            if not len(records):
                continue
            order = np.argsort(records[:, 0], kind="stable")
            key, doc, pos = records[order, 0], records[order, 1], records[order, 2]
            del records, order
            _, starts, counts = np.unique(key, return_index=True, return_counts=True)
            a, b = pair_groups(starts, counts, doc)
            a, b = a[doc[a] != doc[b]], b[doc[a] != doc[b]]
            swap = doc[a] > doc[b]
            a, b = np.where(swap, b, a), np.where(swap, a, b)
            pair = doc[a] * n + doc[b]
            votes.add((pair * width + (pos[b] - pos[a] + span))[:, None], pair % parts)
        for codes in votes:
            codes, votes_at = np.unique(codes[:, 0], return_counts=True)
            codes, votes_at = codes[votes_at >= min_votes], votes_at[votes_at >= min_votes]
            pair, offset = np.divmod(codes, width)
            order = np.lexsort((-votes_at, pair))  # per pair, the offset with the most votes first
            pair, offset = pair[order], offset[order] - span
            best = np.r_[True, pair[1:] != pair[:-1]] if pair.size else np.zeros(0, dtype=bool)
            yield pair[best], offset[best]


def _batches(arrays: Iterable[tuple[np.ndarray, ...]], size: int) -> Iterator[tuple[np.ndarray, ...]]:
    """Consecutive tuples of arrays concatenated into batches of at least ``size`` rows (the last fewer)."""
    held, rows = [], 0
    for item in arrays:
        held.append(item)
        rows += len(item[0])
        if rows >= size:
            yield tuple(np.concatenate(column) for column in zip(*held))
            held, rows = [], 0
    if held:
        yield tuple(np.concatenate(column) for column in zip(*held))
