"""Verify on read: a committed unit is used only once its files match its commit record.

A unit's ``COMMIT.json`` (:mod:`mmvideos.data.dataroot`) carries ``commit_sha256``, the SHA-256
of its own body (every other field, as canonical JSON), and each file's bytes and SHA-256. Before
a unit is reused its commit is parsed and self-checked and each file hashed against the record:
once per unit per process (:func:`verified`), so a stage that reuses thousands of units hashes
each once. A unit that fails is *quarantined*: moved whole to
``<root>/quarantine/<stage>/<key>.<UTC time>/`` (never deleted: it is evidence), after which its
key is free and the stage recomputes it. ``mmvideos verify [--repair]`` walks a whole root.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import os
from pathlib import Path

from mmvideos.data import storage
from mmvideos.data.files import sha256_file

log = logging.getLogger(__name__)

COMMIT = "COMMIT.json"
QUARANTINE = "quarantine"
#: The field of a commit record that holds the SHA-256 of the rest of it.
SELF_HASH = "commit_sha256"

#: Units (``folder:commit_sha256``) this process has hashed and found whole.
_VERIFIED: set[str] = set()


class CorruptUnit(ValueError):
    """A unit whose commit record or files do not match (a flipped bit, a truncated or replaced file)."""


def body_sha256(record: dict) -> str:
    """SHA-256 of a commit record without its :data:`SELF_HASH` field, as canonical JSON."""
    body = {k: v for k, v in record.items() if k != SELF_HASH}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def sealed(record: dict) -> bytes:
    """The bytes of ``COMMIT.json`` for ``record``: the record with its own SHA-256 added."""
    return json.dumps({**record, SELF_HASH: body_sha256(record)}, sort_keys=True, indent=1).encode()


def parse_commit(raw: bytes, uri: str) -> dict:
    """A commit record from its bytes, self-checked; :class:`CorruptUnit` naming ``uri`` when it
    is not valid JSON, lacks its checksum or does not match it."""
    try:
        record = json.loads(raw)
        if not isinstance(record, dict):
            raise ValueError(f"a JSON {type(record).__name__}, not an object")
    except ValueError as exc:
        raise CorruptUnit(f"{uri}: not a valid commit record ({exc}); the unit is corrupt") from None
    if SELF_HASH not in record:
        raise CorruptUnit(f"{uri}: the commit record carries no {SELF_HASH} (written before commits were "
                          "self-checking, or edited); it cannot be trusted")
    if record[SELF_HASH] != body_sha256(record):
        raise CorruptUnit(f"{uri}: the commit record does not match its own {SELF_HASH} (a changed byte)")
    return record


def check_files(folder: str, record: dict) -> None:
    """Every file the commit record names, under ``folder``, has the recorded bytes and SHA-256;
    :class:`CorruptUnit` naming the first that does not. Storage errors propagate.

    On GCS, files whose record carries their MD5 are checked against one listing of the unit
    (size and the ``md5Hash`` GCS keeps for every object) instead of being downloaded: a
    replaced or truncated object shows there, and GCS checks its stored bytes itself.
    """
    files = sorted(record.get("files", {}).items())
    if storage.is_gcs(folder) and files and all("md5" in meta for _, meta in files):
        listed = storage.gcs.object_digests(folder)
        for name, meta in files:
            uri = storage.join(folder, name)
            if uri not in listed:
                raise CorruptUnit(f"{uri}: missing, though {storage.join(folder, COMMIT)} lists it")
            if listed[uri] != (int(meta["bytes"]), meta["md5"]):
                raise CorruptUnit(f"{uri}: corrupt (its size or MD5 is not the one recorded)")
        return
    for name, meta in files:
        uri = storage.join(folder, name)
        try:
            with storage.local_copy(uri) as path:
                size = path.stat().st_size
                digest = sha256_file(path) if size == int(meta["bytes"]) else None
        except FileNotFoundError:
            raise CorruptUnit(f"{uri}: missing, though {storage.join(folder, COMMIT)} lists it") from None
        if digest != meta["sha256"]:
            what = f"{size} bytes, not {meta['bytes']}" if digest is None else "its SHA-256 is not the one recorded"
            raise CorruptUnit(f"{uri}: corrupt ({what})")


def verified(folder: str, raw: bytes, contents: bool = True) -> dict:
    """The self-checked commit record of the unit at ``folder`` (``raw``: its ``COMMIT.json``),
    its files hashed against it the first time this process sees that commit;
    :class:`CorruptUnit` when anything differs. ``contents=False``, for units whose reader checks
    every byte it uses itself (training packs): a local unit's files are checked for their sizes
    only, not read (on GCS the check reads no bytes either way)."""
    record = parse_commit(raw, storage.join(folder, COMMIT))
    token = f"{folder}:{record[SELF_HASH]}"
    if token not in _VERIFIED:
        if contents or storage.is_gcs(folder):
            check_files(folder, record)
            _VERIFIED.add(token)
        else:
            check_sizes(folder, record)
    return record


def check_sizes(folder: str, record: dict) -> None:
    """Every file the commit record names, under the local ``folder``, is there with its recorded
    size; :class:`CorruptUnit` naming the first that is not."""
    for name, meta in sorted(record.get("files", {}).items()):
        path = Path(storage.join(folder, name))
        if not path.is_file():
            raise CorruptUnit(f"{path}: missing, though {storage.join(folder, COMMIT)} lists it")
        if path.stat().st_size != int(meta["bytes"]):
            raise CorruptUnit(f"{path}: corrupt ({path.stat().st_size} bytes, not {meta['bytes']})")


def quarantine(root: str, stage: str, key: str, folder: str) -> str:
    """Move the unit at ``folder`` whole to ``<root>/quarantine/<stage>/<key>.<UTC time>``
    (its commit first, so no reader sees half a unit); returns where it went. A unit another
    process moved first is left alone."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = storage.join(root, QUARANTINE, stage, f"{key}.{stamp}")
    _VERIFIED.difference_update({t for t in _VERIFIED if t.startswith(f"{folder}:")})
    if not storage.is_gcs(folder):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(folder, target)  # one rename: the unit is gone from its key at once
        except FileNotFoundError:
            pass
        return target
    files = sorted((uri for uri, _, _ in storage.list_files(folder)), key=lambda u: not u.endswith(COMMIT))
    for uri in files:
        try:
            storage.gcs.move(uri, storage.join(target, uri[len(folder) + 1:]))
        except FileNotFoundError:
            continue
    return target


@dataclasses.dataclass(frozen=True)
class Problem:
    """A unit :func:`verify_root` found corrupt, and where it was moved (with ``repair``)."""

    stage: str
    key: str
    reason: str
    moved_to: str = ""


def verify_root(root: str, stages: tuple[str, ...], repair: bool = False) -> tuple[int, list[Problem]]:
    """Check every committed unit of ``stages`` under the data root ``root``; with ``repair`` move
    the corrupt ones to quarantine (the next run of their stage recomputes them). Returns the
    number of units checked and the problems. Files without a commit (a task killed half-way) are
    not units and are not checked."""
    checked, problems = 0, []
    for stage in stages:
        for uri, _, _ in storage.list_files(storage.join(root, stage)):
            if not uri.endswith("/" + COMMIT) and not uri.endswith(os.sep + COMMIT):
                continue
            folder = uri[: -len(COMMIT) - 1]
            key = folder.replace(os.sep, "/").rsplit("/", 1)[-1]
            checked += 1
            try:
                verified(folder, storage.read_bytes(uri))
            except CorruptUnit as exc:
                moved = quarantine(root, stage, key, folder) if repair else ""
                problems.append(Problem(stage, key, str(exc), moved))
    return checked, problems
