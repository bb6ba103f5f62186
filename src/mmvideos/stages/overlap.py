"""Benchmark overlap and near duplicates at ingest: exclusion rules and audio fingerprints.

The paper kept AudioSet's evaluation clips out of pretraining; ingesting AudioSet (or any web
crawl) wholesale would not. ``ingest.exclude`` names the benchmark clips four ways:

* ``youtube_ids``: matched against the file name as AudioSet and VGGSound files are named
  (``<id>.mp4``, ``<id>_<start>.mp4``, ``<id>_<start>_<end>.mp4``, ``Y<id>_<start>_<end>.wav``);
* ``files``: a file name (``1-100032-A-0.wav``) or its stem (matches any extension);
* ``sha256``: the content hash of the file (a byte-identical copy, whatever its name);
* ``audio``: folders, files or ``gs://`` prefixes of benchmark audio (e.g. ESC-50's ``audio/``);
  their audio fingerprints are compared with every ingested video's, so a re-encoded,
  re-muxed or renamed copy is caught too.

Each of the first three may also name a ``.csv``/``.txt``/``.lst`` file (local or ``gs://``)
whose first column lists them, such as AudioSet's ``eval_segments.csv``.

Fingerprints are Chromaprint's (the AcoustID project's; ``pyacoustid`` wraps ``libchromaprint``):
about 8 32-bit values per second of audio, each the signs of 16 filters over the chroma
spectrogram, robust to lossy re-encoding, resampling and volume changes. Each video's
fingerprint is computed once, in the probe map (cached with its probe unit); the gather compares
them all. Comparison scales as AcoustID's does: an inverted index over the fingerprint values
(three bands of their bits, :data:`BAND_ROTATIONS`) finds candidate pairs that share values at a
consistent time offset; only those pairs are verified, by the bit error rate (BER) of the aligned
overlap: about 0.4-0.5 for unrelated audio, under 0.1 for a re-encoded copy. A short clip
contained in a longer video matches too.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from mmvideos.data import media, storage
from mmvideos.data.dataroot import DataRoot, manifest_rows, unit_key
from mmvideos.data.sources import LIST_SUFFIXES, source_entries
from mmvideos.progress import progress_bar

log = logging.getLogger(__name__)

#: Audio is decoded to this rate, mono, for fingerprinting (Chromaprint resamples it to 11,025 Hz).
SAMPLE_RATE = 16000
#: Chromaprint items per second of audio (a 4,096-sample frame every 1,365 samples at 11,025 Hz).
ITEMS_PER_S = 11025 / 1365
#: Each value is indexed by three keys, its bits rotated by these amounts, then cut to
#: :func:`key_bits`: a value that lost a bit or two to re-encoding still shares a key.
BAND_ROTATIONS = (0, 11, 22)
#: Up to this many postings of an index value are paired all with all; a more frequent value
#: (silence, hum, or a clip copied many times) pairs each posting with the value's first
#: :data:`HUB_PRINTS` fingerprints only, the earliest (those that are kept): linear, not quadratic.
MAX_POSTINGS = 64
HUB_PRINTS = 8
#: A value that changed at most this many of its 32 bits from both neighbours is steady
#: (:func:`informative`): silence, DC, a tone.
STEADY_BITS = 2
#: Candidate pairs need this many values in common at one time offset before they are verified.
MIN_VOTES = 2

BENCHMARK = "benchmark overlap"
NEAR_DUPLICATE = "near duplicate of"
YOUTUBE_ID = re.compile(r"[A-Za-z0-9_-]{11}")
#: A file name (less extension and AudioSet's ``Y``) for a YouTube id: ``<id>[_<start>[_<end>]]``.
_YOUTUBE_NAME = re.compile(r"([A-Za-z0-9_-]{11})(?:_\d+(?:\.\d+)?){0,2}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclasses.dataclass(frozen=True)
class ExcludeConfig:
    """``params.yaml: ingest.exclude``: the benchmark clips that must not be ingested."""

    youtube_ids: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    sha256: tuple[str, ...] = ()
    audio: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"ingest.exclude.{field.name}: expected a list of strings, got {value!r}")
            object.__setattr__(self, field.name, tuple(v.strip() for v in value if v.strip()))


@dataclasses.dataclass(frozen=True)
class FingerprintConfig:
    """``params.yaml: ingest.fingerprint``: audio fingerprints for near duplicates and overlap."""

    seconds: float = 120.0       # audio fingerprinted from the start of each file; 0 = no fingerprints
    max_ber: float = 0.2         # aligned bit error rate at or under which two fingerprints match
    min_overlap_s: float = 1.5   # the shortest aligned overlap that counts as a match

    def __post_init__(self) -> None:
        if self.seconds < 0 or self.min_overlap_s <= 0 or not 0 < self.max_ber < 0.5:
            raise ValueError("ingest.fingerprint: seconds >= 0, min_overlap_s > 0 and 0 < max_ber < 0.5 "
                             f"(unrelated audio is near 0.5), got {self}")

    @property
    def min_items(self) -> int:
        return max(4, round(self.min_overlap_s * ITEMS_PER_S))


def fingerprint(path: str | Path, seconds: float) -> str:
    """The Chromaprint fingerprint (compressed, base64) of the first ``seconds`` of audio of a file.

    Raises :class:`media.MediaError` when the audio cannot be decoded.
    """
    fingerprinter = _chromaprint().Fingerprinter()
    fingerprinter.start(SAMPLE_RATE, 1)
    todo = int(seconds * SAMPLE_RATE)
    for chunk in media.iter_audio(path, SAMPLE_RATE, chunk_s=min(10.0, seconds)):
        fingerprinter.feed(chunk[:todo].tobytes())
        todo -= chunk.size
        if todo <= 0:
            break
    return fingerprinter.finish().decode("ascii")


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
    :data:`STEADY_BITS` bits is steady: it is neither indexed nor scored, so padding, pauses and
    tones can never make two unrelated files match. Speech, music and noise change 3-15 bits a
    step.
    """
    if values.size < 2:
        return np.zeros(values.size, dtype=bool)
    step = np.bitwise_count(values[1:] ^ values[:-1]).astype(np.int64)  # [n - 1]
    before, after = np.r_[step[:1], step], np.r_[step, step[-1:]]
    return np.maximum(before, after) > STEADY_BITS


def find_matches(prints: list[np.ndarray], cfg: FingerprintConfig) -> list[Match]:
    """Every pair of fingerprints that match (:class:`Match`, ``a < b``), without comparing all pairs.

    Only :func:`informative` values count. Candidates come from an inverted index over bands of
    those values' bits: two prints vote for a time offset each time they share a value; pairs
    with :data:`MIN_VOTES` at their best offset are verified by the bit error rate of the aligned
    overlap (best of that offset and its neighbours), taken over the positions informative in
    both prints, which must span ``min_overlap_s``. A print with less informative audio than
    that (silence, a tone, a short beep) never matches.
    """
    masks = [informative(p) for p in prints]
    useful = [i for i, m in enumerate(masks) if m.sum() >= cfg.min_items]
    if len(useful) < 2:
        return []
    values = np.concatenate([prints[i][masks[i]] for i in useful]).astype(np.uint64)
    doc = np.concatenate([np.full(masks[i].sum(), i, dtype=np.int64) for i in useful])
    pos = np.concatenate([np.flatnonzero(masks[i]).astype(np.int64) for i in useful])
    bits = key_bits(values.size)
    keys = np.concatenate([(band << bits) | ((((values << r) | (values >> (32 - r))) & 0xFFFFFFFF) >> (32 - bits))
                           for band, r in enumerate(BAND_ROTATIONS)])
    doc, pos = np.tile(doc, len(BAND_ROTATIONS)), np.tile(pos, len(BAND_ROTATIONS))
    order = np.argsort(keys, kind="stable")
    keys, doc, pos = keys[order], doc[order], pos[order]
    _, starts, counts = np.unique(keys, return_index=True, return_counts=True)
    pairs_a, pairs_b = [], []
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
    if not pairs_a:
        return []
    a, b = np.concatenate(pairs_a), np.concatenate(pairs_b)
    a, b = a[doc[a] != doc[b]], b[doc[a] != doc[b]]
    swap = doc[a] > doc[b]
    a, b = np.where(swap, b, a), np.where(swap, a, b)
    # one vote per shared value for (print a, print b, offset of b against a), as one int64 code
    span, n = int(pos.max()) + 1, len(prints)
    codes, votes = np.unique((doc[a] * n + doc[b]) * (2 * span + 1) + (pos[b] - pos[a] + span), return_counts=True)
    codes, votes = codes[votes >= MIN_VOTES], votes[votes >= MIN_VOTES]
    pair, offset = np.divmod(codes, 2 * span + 1)
    order = np.lexsort((-votes, pair))  # per pair, the offset with the most votes first
    pair, offset = pair[order], offset[order] - span
    best = np.r_[True, pair[1:] != pair[:-1]] if pair.size else np.zeros(0, dtype=bool)
    matches = []
    for p, offset in zip(pair[best].tolist(), offset[best].tolist()):
        da, db = divmod(p, n)
        ber, items, at = min(_aligned_ber(prints[da], prints[db], o, masks[da], masks[db]) + (o,)
                             for o in (offset - 1, offset, offset + 1))
        if items >= cfg.min_items and ber <= cfg.max_ber:
            matches.append(Match(da, db, at, round(ber, 3), items))
    return matches


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
    ``fingerprint``) overlap a benchmark or are near duplicates of another.

    In URI order: a candidate matching an exclusion rule, or whose audio matches benchmark audio
    or a candidate that matches a rule, is a benchmark overlap; one whose audio matches an
    earlier candidate that was kept is a near duplicate of that one. The reason names the rule
    and the item that matched.
    """
    rules = _rules(exclude)
    bench_uris, bench_prints, manifest = benchmark_prints(exclude.audio, cfg, root, progress)
    uris = sorted(candidates["uri"])
    prints_of = dict(zip(candidates["uri"], candidates["fingerprint"]))
    sha_of = dict(zip(candidates["uri"], candidates["sha256"]))
    ruled = {i: rule for i, uri in enumerate(uris) if (rule := _rule_match(uri, sha_of[uri], rules))}
    prints = [decode(p) for p in bench_prints] + [decode(prints_of[u] or "") for u in uris]
    first = len(bench_prints)
    bench_hit: dict[int, tuple[str, Match]] = {}
    neighbours: dict[int, list[tuple[int, Match]]] = {}  # both ways, by candidate index
    for m in find_matches(prints, cfg):
        if m.a < first <= m.b:
            bench_hit.setdefault(m.b - first, (f"{bench_uris[m.a]} (exclude.audio", m))
        elif m.a >= first:
            neighbours.setdefault(m.b - first, []).append((m.a - first, m))
            neighbours.setdefault(m.a - first, []).append((m.b - first, m))
    for i, near in neighbours.items():
        near.sort(key=lambda pair: pair[0])
        if i not in ruled and i not in bench_hit:
            j, m = next(((j, m) for j, m in near if j in ruled), (None, None))
            if j is not None:
                bench_hit[i] = (f"{uris[j]} (itself excluded by {ruled[j]}", m)
    reasons, kept = {}, set()
    for i, uri in enumerate(uris):
        if i in ruled:
            reasons[uri] = f"{BENCHMARK}: {ruled[i]}"
        elif i in bench_hit:
            source, m = bench_hit[i]
            reasons[uri] = f"{BENCHMARK}: audio matches {source}; {m.describe()})"
        elif near := next(((j, m) for j, m in neighbours.get(i, []) if j in kept), None):
            reasons[uri] = f"{NEAR_DUPLICATE} {uris[near[0]]} (audio fingerprint, {near[1].describe()})"
        else:
            kept.add(i)
    return Screen(reasons, manifest, len(bench_prints))


def youtube_ids_in(uri: str) -> set[str]:
    """The YouTube ids a file's name may stand for (``<id>``, ``Y<id>_30.000_40.000``, ``<id>_000030``).

    Ids are 11 characters that may include ``_`` and ``-``, so a name can parse two ways
    (with or without AudioSet's ``Y`` prefix): both are returned.
    """
    stem = _strip_extension(uri.rstrip("/").rsplit("/", 1)[-1])
    bodies = (stem, stem[1:]) if stem.startswith("Y") else (stem,)
    return {m.group(1) for m in map(_YOUTUBE_NAME.fullmatch, bodies) if m}


def _strip_extension(name: str) -> str:
    """``Y--0w1YA1Hm4_30.000_40.000.wav`` -> ``Y--0w1YA1Hm4_30.000_40.000`` (start times keep their dots)."""
    return re.sub(r"\.[A-Za-z][A-Za-z0-9]{0,4}$", "", name)


@dataclasses.dataclass(frozen=True)
class _Rules:
    youtube_ids: frozenset[str]
    files: frozenset[str]
    sha256: frozenset[str]


def _rules(exclude: ExcludeConfig) -> _Rules:
    ids = set(_expand(exclude.youtube_ids, "youtube_ids", YOUTUBE_ID))
    sha = set(_expand(exclude.sha256, "sha256", _SHA256, lower=True))
    files = set(_expand(exclude.files, "files", None))
    return _Rules(frozenset(ids), frozenset(files), frozenset(sha))


def _rule_match(uri: str, sha256: str, rules: _Rules) -> str:
    """Which exclusion rule ``uri`` (with this content hash) matches, in words; "" for none."""
    if sha256 in rules.sha256:
        return f"content SHA-256 {sha256} (exclude.sha256)"
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    for candidate in (name, _strip_extension(name)):
        if candidate in rules.files:
            return f"file name {candidate} (exclude.files)"
    hit = sorted(youtube_ids_in(uri) & rules.youtube_ids)
    if hit:
        return f"YouTube id {hit[0]} (exclude.youtube_ids)"
    return ""


def _expand(entries: Iterable[str], name: str, pattern: re.Pattern | None, lower: bool = False) -> list[str]:
    """The items of an exclusion list: each entry, or the first column of a list file it names.

    A list file's first line may be a header (it is skipped when it is not a valid item);
    lines starting with ``#`` are comments. An invalid item is an error naming where it is.
    """
    items = []
    for entry in entries:
        if entry.lower().endswith(LIST_SUFFIXES):
            with storage.local_copy(entry) as path:
                lines = [line.strip() for line in Path(path).read_text().splitlines()]
            rows = [line.split(",")[0].strip().strip('"') for line in lines if line and not line.startswith("#")]
            rows = [r.lower() if lower else r for r in rows]
            if rows and pattern is not None and not pattern.fullmatch(rows[0]):
                rows = rows[1:]  # a header
            where = f"ingest.exclude.{name}: {entry}"
        else:
            rows, where = [entry.lower() if lower else entry], f"ingest.exclude.{name}"
        for row in rows:
            if pattern is not None and not pattern.fullmatch(row):
                raise ValueError(f"{where}: {row!r} is not a valid {name.replace('_', ' ').rstrip('s')}")
        items += rows
    return items


def benchmark_prints(roots: tuple[str, ...], cfg: FingerprintConfig, root: DataRoot | None = None,
                     progress: bool = False) -> tuple[list[str], list[str], pd.DataFrame]:
    """The fingerprints of the benchmark audio under ``roots``: ``(uris, fingerprints, manifest)``.

    Each file's fingerprint is a probe-stage unit of the data root (keyed by its listing entry),
    so a benchmark is fingerprinted once, not on every run. Files that are not audio (a
    benchmark's metadata CSV, a README) are skipped.
    """
    if not roots:
        return [], [], manifest_rows([])
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
                return {"uri": uri, "fingerprint": fingerprint(path, cfg.seconds)}, {}
            except media.MediaError as exc:
                return {"uri": uri, "fingerprint": "", "reason": str(exc)}, {}

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
    return [r["uri"] for r in usable], [r["fingerprint"] for r in usable], manifest_rows(records if root else [])
