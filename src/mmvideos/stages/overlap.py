"""Benchmark overlap and near duplicates at ingest: audio fingerprints.

The paper kept AudioSet's evaluation clips out of pretraining; ingesting AudioSet (or any web
crawl) wholesale would not. ``ingest.exclude`` names the benchmark clips four ways: YouTube ids,
file names and content hashes (:mod:`mmvideos.stages.exclusions`), and ``audio``: folders, files
or ``gs://`` prefixes of benchmark audio (e.g. ESC-50's ``audio/``), whose fingerprints are
compared with every ingested video's, so a re-encoded, re-muxed, renamed or edited copy is
caught too.

Fingerprints are Chromaprint's (the AcoustID project's; ``pyacoustid`` wraps ``libchromaprint``):
about 8 32-bit values per second of audio, each the signs of 16 filters over the chroma
spectrogram, robust to lossy re-encoding, resampling and volume changes. Each video's
fingerprint is computed once, in the probe map (cached with its probe unit); the gather compares
them all. Comparison scales as AcoustID's does: an inverted index over the fingerprint values
(three bands of their bits, :data:`BAND_ROTATIONS`) finds candidate pairs that share values at a
consistent time offset; only those pairs are verified, by the bit error rate (BER) of the aligned
overlap: about 0.4-0.5 for unrelated audio, under 0.1 for a re-encoded copy. A short clip
contained in a longer video matches too. Chromaprint finds near duplicates among the inputs and
verbatim benchmark copies; edited benchmark copies (speed, tempo, pitch, loud noise) are found by
the landmark fingerprint of :mod:`mmvideos.stages.landmarks`, computed from the same decoding.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mmvideos.data import media, storage
from mmvideos.data.atomic import scratch_dir
from mmvideos.data.dataroot import DataRoot, manifest_rows, unit_key
from mmvideos.data.sources import source_entries
from mmvideos.progress import progress_bar
from mmvideos.stages import landmarks, print_index
from mmvideos.stages.exclusions import ExcludeConfig, exclusion_rules, rule_match

log = logging.getLogger(__name__)

#: Audio is decoded to this rate, mono, for fingerprinting (Chromaprint resamples it to 11,025 Hz).
SAMPLE_RATE = 16000
#: Chromaprint items per second of audio (a 4,096-sample frame every 1,365 samples at 11,025 Hz).
ITEMS_PER_S = 11025 / 1365
#: Each value is indexed by three keys, its bits rotated by these amounts, then cut to
#: :func:`key_bits`: a value that lost a bit or two to re-encoding still shares a key.
BAND_ROTATIONS = (0, 11, 22)
#: Up to this many postings of an index value are paired all with all; a more frequent value (a
#: common sound, or a clip copied many times; silence and hum are never indexed) pairs each
#: posting with the value's first :data:`HUB_PRINTS` fingerprints only, the earliest (those that
#: are kept): linear, not quadratic.
MAX_POSTINGS = 64
HUB_PRINTS = 8
#: A value that changed at most this many of its 32 bits from both neighbours is steady
#: (:func:`informative`): silence, DC, a tone.
STEADY_BITS = 2
#: Values this close to a steady one are masked too (:func:`informative`).
STEADY_MARGIN = 4
#: Candidate pairs need this many values in common at one time offset before they are verified.
MIN_VOTES = 2

BENCHMARK = "benchmark overlap"
NEAR_DUPLICATE = "near duplicate of"



@dataclasses.dataclass(frozen=True)
class FingerprintConfig:
    """``params.yaml: ingest.fingerprint``: audio fingerprints for near duplicates and overlap."""

    seconds: float = 120.0       # audio fingerprinted from the start of each file; 0 = no fingerprints
    max_ber: float = 0.2         # aligned bit error rate at or under which two fingerprints match
    min_overlap_s: float = 1.5   # the shortest aligned overlap that counts as a match
    min_votes: int = 18          # landmark pairs at one offset that make a benchmark match (landmarks)

    def __post_init__(self) -> None:
        if self.seconds < 0 or self.min_overlap_s <= 0 or not 0 < self.max_ber < 0.5 or self.min_votes < 1:
            raise ValueError("ingest.fingerprint: seconds >= 0, min_overlap_s > 0, 0 < max_ber < 0.5 "
                             f"(unrelated audio is near 0.5) and min_votes >= 1, got {self}")

    @property
    def min_items(self) -> int:
        return max(4, round(self.min_overlap_s * ITEMS_PER_S))


def audio_prints(path: str | Path, seconds: float) -> dict[str, str]:
    """The two fingerprints of the first ``seconds`` of audio of a file, from one decoding:
    ``fingerprint`` (Chromaprint's, compressed, base64) and ``landmarks`` (peaks for
    :mod:`mmvideos.stages.landmarks`, :func:`mmvideos.stages.landmarks.encode`).

    Raises :class:`media.MediaError` when the audio cannot be decoded.
    """
    fingerprinter = _chromaprint().Fingerprinter()
    fingerprinter.start(SAMPLE_RATE, 1)
    todo = int(seconds * SAMPLE_RATE)
    chunks = []
    for chunk in media.iter_audio(path, SAMPLE_RATE, chunk_s=min(10.0, seconds)):
        chunks.append(chunk[:todo])
        fingerprinter.feed(chunk[:todo].tobytes())
        todo -= chunk.size
        if todo <= 0:
            break
    samples = np.concatenate(chunks).astype(np.float32) / 32768.0 if chunks else np.zeros(0, np.float32)
    return {"fingerprint": fingerprinter.finish().decode("ascii"),
            "landmarks": landmarks.encode(landmarks.peaks(samples))}


def _chromaprint():
    try:
        import chromaprint
    except ImportError as exc:
        raise RuntimeError("audio fingerprints need libchromaprint: `make system-deps` (or apt-get install "
                           "libchromaprint1); or set ingest.fingerprint.seconds: 0 to go without") from exc
    return chromaprint


def decode(encoded: str) -> np.ndarray:
    """A fingerprint string (:func:`fingerprint`) as its uint32 values."""
    if not encoded:
        return np.zeros(0, dtype=np.uint32)
    values, _ = _chromaprint().decode_fingerprint(encoded.encode("ascii"))
    return np.asarray(values, dtype=np.uint32)


@dataclasses.dataclass(frozen=True)
class Match:
    """Two fingerprints that match: ``b`` aligned ``offset`` items after ``a``."""

    a: int
    b: int
    offset: int
    ber: float
    items: int

    def describe(self) -> str:
        return f"bit error rate {self.ber:.2f} over {self.items} fingerprint values, {self.items / ITEMS_PER_S:.1f} s"


def informative(values: np.ndarray) -> np.ndarray:
    """Which fingerprint values carry evidence of content: a bool mask, False on steady stretches.

    Digital silence, DC, a steady tone or hum give one value over and over (Chromaprint's filters
    compare chroma across time, and nothing changes); every silent stretch of every file gives
    the same value. A value that differs from both its neighbours by at most
    :data:`STEADY_BITS` bits is steady; it and the :data:`STEADY_MARGIN` values either side are
    neither indexed nor scored, so padding, pauses and tones can never make two unrelated files
    match. Speech, music and noise change 3-15 bits a
    step.
    """
    if values.size < 2:
        return np.zeros(values.size, dtype=bool)
    step = np.bitwise_count(values[1:] ^ values[:-1]).astype(np.int64)  # [n - 1]
    before, after = np.r_[step[:1], step], np.r_[step, step[-1:]]
    steady = np.maximum(before, after) <= STEADY_BITS
    # a value's filters span several frames: next to a steady stretch it still mostly sees that
    # stretch (two unrelated sentences after silence share their first values), so widen the mask
    near = np.convolve(steady.astype(np.int64), np.ones(2 * STEADY_MARGIN + 1, dtype=np.int64), "same") > 0
    return ~near


def find_matches(prints: Sequence[np.ndarray], cfg: FingerprintConfig) -> list[Match]:
    """Every pair of fingerprints that match (:class:`Match`, ``a < b``), without comparing all pairs.

    Only :func:`informative` values count. Candidates come from an inverted index over bands of
    those values' bits: two prints vote for a time offset each time they share a value; pairs
    with :data:`MIN_VOTES` at their best offset are verified by the bit error rate of the aligned
    overlap (best of that offset and its neighbours), taken over the positions informative in
    both prints, which must span ``min_overlap_s``. A print with less informative audio than
    that (silence, a tone, a short beep) never matches.

    The index and its votes are built on disk a partition at a time
    (:mod:`mmvideos.stages.print_index`), so memory does not grow with the corpus; ``prints`` may
    be a :class:`~mmvideos.stages.print_index.PrintStore` (prints on disk) or a list.
    """
    useful, items, span = [], 0, 0
    for i in range(len(prints)):
        mask = informative(prints[i])
        if mask.sum() >= cfg.min_items:
            useful.append(i)
            items += int(mask.sum())
            span = max(span, int(np.flatnonzero(mask)[-1]) + 1)
    if len(useful) < 2:
        return []
    bits = key_bits(items)

    def postings() -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        for i in useful:  # a key's postings in print, then position order, as one sorted index has them
            mask = informative(prints[i])
            values, pos = prints[i][mask].astype(np.uint64), np.flatnonzero(mask).astype(np.int64)
            for band, r in enumerate(BAND_ROTATIONS):
                yield ((band << bits) | ((((values << r) | (values >> (32 - r))) & 0xFFFFFFFF) >> (32 - bits)),
                       np.full(len(values), i, dtype=np.int64), pos)

    matches, n, last = [], len(prints), -1
    for pairs, offsets in print_index.best_offsets(postings(), items * len(BAND_ROTATIONS), n, span, _pair_groups,
                                                   MIN_VOTES):
        for p, offset in zip(pairs.tolist(), offsets.tolist()):
            da, db = divmod(p, n)
            if da != last:  # the pairs come in order of their first print: read it once for all its pairs
                a, last = prints[da], da
                mask_a = informative(a)
            b = prints[db]
            mask_b = informative(b)
            ber, count, at = min(_aligned_ber(a, b, o, mask_a, mask_b) + (o,) for o in (offset - 1, offset, offset + 1))
            if count >= cfg.min_items and ber <= cfg.max_ber:
                matches.append(Match(da, db, at, round(ber, 3), count))
    return sorted(matches, key=lambda m: (m.a, m.b))


def _pair_groups(starts: np.ndarray, counts: np.ndarray, doc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The posting pairs of a key-sorted index's groups (``starts``, ``counts``): every pair of a
    group of up to :data:`MAX_POSTINGS`, the first posting of each of the first :data:`HUB_PRINTS`
    prints with every posting in a larger one."""
    pairs_a, pairs_b = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for size in range(2, MAX_POSTINGS + 1):  # every pair of postings of a value, one group size at a time
        group = starts[counts == size]
        if group.size:
            rows, cols = np.triu_indices(size, 1)
            members = group[:, None] + np.arange(size)
            pairs_a.append(members[:, rows].ravel())
            pairs_b.append(members[:, cols].ravel())
    for start, size in zip(starts[counts > MAX_POSTINGS].tolist(), counts[counts > MAX_POSTINGS].tolist()):
        members = np.arange(start, start + size)  # ordered by print, the earliest first
        _, firsts = np.unique(doc[members], return_index=True)
        hubs = members[firsts[:HUB_PRINTS]]
        pairs_a.append(np.repeat(hubs, size))
        pairs_b.append(np.tile(members, hubs.size))
    return np.concatenate(pairs_a), np.concatenate(pairs_b)


def key_bits(items: int) -> int:
    """Bits per index key for a corpus of ``items`` fingerprint values.

    Fewer bits find more re-encoded copies (a key survives more bit errors) but put more values
    in each posting list; so keys grow with the corpus, from 20 bits up to AcoustID's 28.
    """
    return int(np.clip(np.ceil(np.log2(max(items, 2))) + 2, 20, 28))


def _aligned_ber(a: np.ndarray, b: np.ndarray, offset: int, mask_a: np.ndarray,
                 mask_b: np.ndarray) -> tuple[float, int]:
    """Bit error rate of ``a[i]`` against ``b[i + offset]`` over the aligned positions informative
    in both, and how many there are."""
    lo, hi = max(0, -offset), min(len(a), len(b) - offset)
    if hi - lo <= 0:
        return 1.0, 0
    both = mask_a[lo:hi] & mask_b[lo + offset:hi + offset]
    items = int(both.sum())
    if not items:
        return 1.0, 0
    flipped = np.bitwise_count(a[lo:hi][both] ^ b[lo + offset:hi + offset][both]).sum()
    return float(flipped) / (32 * items), items


@dataclasses.dataclass
class Screen:
    """What :func:`screen` decided: ``{uri: reason}`` of rejected candidates, and the manifest rows
    of the benchmark fingerprint units it used (the gather records them, so gc keeps them)."""

    reasons: dict[str, str]
    manifest: pd.DataFrame
    benchmark_prints: int = 0

    def summary(self, rejects: pd.DataFrame) -> dict[str, int]:
        """Summary counts: rejects that are benchmark overlaps and near duplicates, benchmark prints."""
        reasons = rejects["reason"].astype(str)
        return {"benchmark_overlaps": int(reasons.str.startswith(BENCHMARK).sum()),
                "near_duplicates": int(reasons.str.startswith(NEAR_DUPLICATE).sum()),
                "benchmark_fingerprints": self.benchmark_prints}


def screen(candidates: pd.DataFrame, exclude: ExcludeConfig, cfg: FingerprintConfig,
           root: DataRoot | None = None, progress: bool = False) -> Screen:
    """Which of the ``candidates`` (probe rows that pass every other check: ``uri``, ``sha256``,
    ``fingerprint``, ``landmarks``) overlap a benchmark or are near duplicates of another.

    In URI order: a candidate matching an exclusion rule, or whose audio matches benchmark audio
    (its Chromaprint fingerprint, or an edited copy by its landmarks: :mod:`.landmarks`) or a
    candidate that matches a rule, is a benchmark overlap; one whose audio matches an earlier
    candidate that was kept is a near duplicate of that one. The reason names the rule and the
    item that matched.
    """
    rules = exclusion_rules(exclude)
    bench = benchmark_prints(exclude.audio, cfg, root, progress)
    uris = sorted(candidates["uri"])
    prints_of = dict(zip(candidates["uri"], candidates["fingerprint"]))
    peaks_of = dict(zip(candidates["uri"], candidates["landmarks"]))
    sha_of = dict(zip(candidates["uri"], candidates["sha256"]))
    ruled = {i: rule for i, uri in enumerate(uris) if (rule := rule_match(uri, sha_of[uri], rules))}
    first = len(bench.uris)
    bench_hit: dict[int, tuple[str, str]] = {}  # candidate -> (what it matches, how)
    neighbours: dict[int, list[tuple[int, Match]]] = {}  # both ways, by candidate index
    with scratch_dir("prints") as folder:  # decoded prints on disk, not in memory
        prints = print_index.PrintStore(folder, (decode(p or "") for p in [*bench.fingerprints,
                                                                           *(prints_of[u] for u in uris)]))
        matches = find_matches(prints, cfg)
        prints.close()
    for m in matches:
        if m.a < first <= m.b:
            bench_hit.setdefault(m.b - first, (f"{bench.uris[m.a]} (exclude.audio", m.describe()))
        elif m.a >= first:
            neighbours.setdefault(m.b - first, []).append((m.a - first, m))
            neighbours.setdefault(m.a - first, []).append((m.b - first, m))
    if first:
        index = landmarks.BenchmarkIndex([landmarks.decode(p) for p in bench.landmarks])
        for i, uri in enumerate(uris):
            if i not in ruled and i not in bench_hit and peaks_of[uri]:
                hit = index.best(landmarks.decode(peaks_of[uri]))
                if hit is not None and hit.votes >= cfg.min_votes:
                    bench_hit[i] = (f"{bench.uris[hit.clip]} (exclude.audio", hit.describe())
    for i, near in neighbours.items():
        near.sort(key=lambda pair: pair[0])
        if i not in ruled and i not in bench_hit:
            j, m = next(((j, m) for j, m in near if j in ruled), (None, None))
            if j is not None:
                bench_hit[i] = (f"{uris[j]} (itself excluded by {ruled[j]}", m.describe())
    reasons, kept = {}, set()
    for i, uri in enumerate(uris):
        if i in ruled:
            reasons[uri] = f"{BENCHMARK}: {ruled[i]}"
        elif i in bench_hit:
            source, how = bench_hit[i]
            reasons[uri] = f"{BENCHMARK}: audio matches {source}; {how})"
        elif near := next(((j, m) for j, m in neighbours.get(i, []) if j in kept), None):
            reasons[uri] = f"{NEAR_DUPLICATE} {uris[near[0]]} (audio fingerprint, {near[1].describe()})"
        else:
            kept.add(i)
    return Screen(reasons, bench.manifest, first)


@dataclasses.dataclass
class BenchmarkPrints:
    """The benchmark audio's fingerprints (:func:`benchmark_prints`), one entry per usable file."""

    uris: list[str]
    fingerprints: list[str]
    landmarks: list[str]
    manifest: pd.DataFrame


def benchmark_prints(roots: tuple[str, ...], cfg: FingerprintConfig, root: DataRoot | None = None,
                     progress: bool = False) -> BenchmarkPrints:
    """The fingerprints (Chromaprint's and landmarks) of the benchmark audio under ``roots``.

    Each file's fingerprints are a probe-stage unit of the data root (keyed by its listing entry),
    so a benchmark is fingerprinted once, not on every run. Files that are not audio (a
    benchmark's metadata CSV, a README) are skipped.
    """
    if not roots:
        return BenchmarkPrints([], [], [], manifest_rows([]))
    if cfg.seconds <= 0:
        raise ValueError("ingest.exclude.audio needs audio fingerprints: set ingest.fingerprint.seconds > 0")
    try:
        entries = sorted({e for r in roots for e in source_entries(r)})
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"ingest.exclude.audio: {exc}") from exc
    bar = progress_bar(total=len(entries), desc="benchmark fingerprints", unit="file", disable=not progress)

    def compute(uri: str, scratch: Path) -> tuple[dict, dict]:
        with storage.local_copy(uri) as path:
            try:
                return {"uri": uri, **audio_prints(path, cfg.seconds)}, {}
            except media.MediaError as exc:
                return {"uri": uri, "fingerprint": "", "landmarks": "", "reason": str(exc)}, {}

    items = [(unit_key("probe", uri=uri, size=size, entry_version=version, benchmark_fingerprint=cfg.seconds), uri)
             for uri, size, version in entries]
    if root is None:  # nowhere to keep them: computed for this call only
        records = [compute(uri, Path())[0] for _, uri in items]
    else:
        records, _, _ = root.map_units("probe", items, compute, lambda *_: bar.update())
    bar.close()
    usable = [r for r in records if r.get("fingerprint")]
    if len(usable) < len(records):
        log.info("ingest: %d of %d files under exclude.audio hold no decodable audio; skipped",
                 len(records) - len(usable), len(records))
    return BenchmarkPrints([r["uri"] for r in usable], [r["fingerprint"] for r in usable],
                           [r.get("landmarks") or "" for r in usable], manifest_rows(records if root else []))
