"""Ingest's fingerprint index on disk (stages/print_index.py): the same matches however many
partitions it is cut into, prints read back from disk, and memory that does not grow with the videos."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmvideos.bench.reduce import measure_step, write_synthetic_prints
from mmvideos.stages import overlap, print_index


def _walk(rng: np.random.Generator, n: int) -> np.ndarray:
    """A print that changes about 8 bits a value, as speech and music do."""
    flips = rng.integers(0, 2**32, n, dtype=np.uint32) & rng.integers(0, 2**32, n, dtype=np.uint32)
    return np.bitwise_xor.accumulate(flips)


@pytest.fixture(scope="module")
def prints() -> list[np.ndarray]:
    """60 originals, 30 re-encoded copies of ten of them (cut at the start, bits flipped), 80 verbatim
    copies of one (a value with more than MAX_POSTINGS postings: the hub rule)."""
    rng = np.random.default_rng(0)
    base = [_walk(rng, int(rng.integers(50, 400))) for _ in range(60)]
    copies = []
    for k in range(30):
        copy = base[k % 10][int(rng.integers(0, 20)):].copy()
        copy[rng.random(copy.size) < 0.2] ^= np.uint32(1 << 5)
        copies.append(copy)
    return base + copies + [base[3].copy() for _ in range(80)]


def _rows(matches: list[overlap.Match]) -> list[tuple]:
    return [(m.a, m.b, m.offset, m.ber, m.items) for m in matches]


def test_the_matches_do_not_depend_on_the_partitions(prints, monkeypatch, tmp_path):
    whole = _rows(overlap.find_matches(prints, overlap.FingerprintConfig()))  # one partition: the in-memory index
    assert {(0, 60), (1, 61), (9, 69)} <= {(a, b) for a, b, *_ in whole}  # copies found
    assert sum(1 for a, b, *_ in whole if a == 3 and b >= 90) == 80  # every copy of the hub's print
    for postings in (20_000, 3_000, 500):
        monkeypatch.setattr(print_index, "PARTITION_POSTINGS", postings)
        assert print_index.partitions(150_000) > 1
        assert _rows(overlap.find_matches(prints, overlap.FingerprintConfig())) == whole
    store = print_index.PrintStore(tmp_path, prints)
    assert len(store) == len(prints) and all(np.array_equal(store[i], p) for i, p in enumerate(prints))
    assert _rows(overlap.find_matches(print_index.PrintStore(tmp_path), overlap.FingerprintConfig())) == whole


def test_near_duplicate_search_memory_does_not_grow_with_the_videos(tmp_path):
    """2 k and 8 k videos of two minutes: the in-memory index took ~240 kB a video (1.4 GB more at 8 k)."""
    peaks, found = [], []
    for videos in (2_000, 8_000):
        write_synthetic_prints(tmp_path / str(videos), videos)
        peaks.append(measure_step("near_duplicates", tmp_path / str(videos))["peak_mb"])
        found.append(json.loads((tmp_path / str(videos) / "near_duplicates.json").read_text())["matches"])
    assert peaks[1] - peaks[0] < 100, peaks
    assert 0 < found[0] < found[1]  # the 1% copies are found
