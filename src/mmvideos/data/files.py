"""Local files: their SHA-256, and the download cache where fetched assets are kept."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def cache_dir() -> Path:
    """``$MMVIDEOS_CACHE`` or ``~/.cache/mmvideos``."""
    return Path(os.environ.get("MMVIDEOS_CACHE", Path.home() / ".cache" / "mmvideos"))


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, streamed."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
