"""Benchmark exclusion rules at ingest: YouTube ids, file names and content hashes.

``ingest.exclude`` names the benchmark clips (:mod:`mmvideos.stages.overlap` has the audio
side): ``youtube_ids`` are matched against the file name as AudioSet and VGGSound files are
named, ``files`` against a file's name or stem, ``sha256`` against its content hash. Each may
also name a ``.csv``/``.txt``/``.lst`` file (local or ``gs://``) whose first column lists them,
such as AudioSet's ``eval_segments.csv``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from pathlib import Path

from mmvideos.data import storage
from mmvideos.data.sources import LIST_SUFFIXES

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
class Rules:
    """The items of ``ingest.exclude``'s id, name and hash lists, expanded from their list files."""

    youtube_ids: frozenset[str]
    files: frozenset[str]
    sha256: frozenset[str]


def exclusion_rules(exclude: ExcludeConfig) -> Rules:
    """The exclusion lists of ``exclude``, each list file read and every item checked."""
    ids = set(_expand(exclude.youtube_ids, "youtube_ids", YOUTUBE_ID))
    sha = set(_expand(exclude.sha256, "sha256", _SHA256, lower=True))
    files = set(_expand(exclude.files, "files", None))
    return Rules(frozenset(ids), frozenset(files), frozenset(sha))


def rule_match(uri: str, sha256: str, rules: Rules) -> str:
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
