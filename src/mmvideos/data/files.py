"""Local files: their SHA-256, pinned files, and the cache where fetched and derived files are kept."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """``$MMVIDEOS_CACHE`` or ``~/.cache/mmvideos``."""
    return Path(os.environ.get("MMVIDEOS_CACHE", Path.home() / ".cache" / "mmvideos"))


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, streamed."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def sha256_and_md5(path: str | Path) -> tuple[str, str]:
    """Hex SHA-256 and base64 MD5 (as GCS lists an object's ``md5Hash``) of a file, in one read."""
    import base64

    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            sha.update(block)
            md5.update(block)
    return sha.hexdigest(), base64.b64encode(md5.digest()).decode()


#: Derived files this process has hashed and found matching their record.
_CHECKED: set[tuple[str, str]] = set()


def derived(target: str | Path, source_sha256: str, make: Callable[[Path], None]) -> Path:
    """A cached file derived from a source (an ONNX graph from a weights file...), verified.

    ``make(path)`` writes the derivation to ``path``. Beside ``target`` a record
    (``<target>.json``: the source's SHA-256 and the target's own) says what it was made from;
    the cached file is used only when the record names ``source_sha256`` and the file still has
    the recorded SHA-256 (hashed once per process). Anything else (a flipped bit, a file left by
    other code, no record) is rebuilt, atomically, and the record rewritten after it.
    """
    target = Path(target)
    record = target.with_name(target.name + ".json")
    try:
        meta = json.loads(record.read_text())
        if meta.get("source_sha256") == source_sha256 and target.is_file():
            if (str(target), meta.get("sha256")) in _CHECKED or sha256_file(target) == meta.get("sha256"):
                _CHECKED.add((str(target), meta["sha256"]))
                return target
            log.warning("%s does not match its record %s (a changed byte): rebuilding it", target, record)
    except (FileNotFoundError, ValueError, AttributeError):
        pass
    from mmvideos.data.atomic import atomic_path, write_json

    with atomic_path(target) as tmp:
        make(tmp)
        digest = sha256_file(tmp)
    write_json({"source_sha256": source_sha256, "sha256": digest}, record)
    _CHECKED.add((str(target), digest))
    return target


def check_pinned(path: str | Path, sha256: str, what: str, fix: str) -> str:
    """``sha256`` when the file at ``path`` has it; else a ``ValueError`` naming the file, ``what``
    it should be and the ``fix``."""
    found = sha256_file(path)
    if found != sha256:
        raise ValueError(f"{path}: {what} has SHA-256 {found}, not the pinned {sha256} (a corrupt or replaced "
                         f"file); {fix}")
    return found
