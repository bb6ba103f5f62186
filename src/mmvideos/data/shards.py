"""Tar shards: the streaming container for per-clip payloads (audio, frames, features).

A shard is a plain POSIX tar whose members are named ``<key>.<suffix>``; the members of one key
are contiguous, so a shard streams front to back (``tarfile`` mode ``r|``) from a local file or
a ``gs://`` object without an index and without holding more than one key in memory. Keys are
clip ids, which never contain a dot. Writing is atomic (``ShardWriter`` writes a temporary file
and renames it on ``close``) and deterministic (fixed mtime, owner and mode), so re-running a
stage on the same input gives byte-identical shards.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import tempfile
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np

from mmvideos.data import storage
from mmvideos.data.atomic import replace_durably


class ShardWriter:
    """Append ``{suffix: bytes}`` groups under a key to a tar shard, atomically."""

    def __init__(self, path: str | Path | None, fileobj: IO[bytes] | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._tmp = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
            os.close(fd)
            self._tar = tarfile.open(self._tmp, "w", format=tarfile.PAX_FORMAT)
        else:
            self._tar = tarfile.open(fileobj=fileobj, mode="w", format=tarfile.PAX_FORMAT)

    @classmethod
    def to_file(cls, fileobj: IO[bytes]) -> ShardWriter:
        """A writer into an open binary file (a spool), not renamed into place on close."""
        return cls(None, fileobj)

    def write(self, key: str, payload: dict[str, bytes]) -> None:
        """Add one key's members (``key.suffix``), in sorted suffix order."""
        if "." in key or "/" in key:
            raise ValueError(f"shard keys may not contain '.' or '/': {key!r}")
        for suffix in sorted(payload):
            data = payload[suffix]
            info = tarfile.TarInfo(f"{key}.{suffix}")
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            self._tar.addfile(info, io.BytesIO(data))

    def close(self) -> Path | None:
        """Finish the shard and move it into place."""
        self._tar.close()
        if self._tmp is not None:
            os.chmod(self._tmp, 0o644)  # mkstemp creates 0600; shards are meant to be shared
            replace_durably(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the partial shard."""
        self._tar.close()
        if self._tmp is not None:
            Path(self._tmp).unlink(missing_ok=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _open_stream(uri: str | Path) -> IO[bytes]:
    uri = str(uri)
    if storage.is_gcs(uri):
        return io.BufferedReader(storage.gcs.Reader(uri), buffer_size=1 << 20)  # ranged reads, retried
    return open(uri, "rb")


def iter_shard(uri: str | Path, sha256: str = "") -> Iterator[tuple[str, dict[str, bytes]]]:
    """Stream ``(key, {suffix: bytes})`` groups from a shard (local path or ``gs://``).

    A damaged (truncated, overwritten) tar is a ``ValueError`` naming the shard; with ``sha256``
    (its manifest row's) the bytes are hashed as they stream and a mismatch is a ``ValueError``
    once the last group has been read, so a unit computed from it is never committed.
    """
    fix = "delete its unit folder in the data root and run the stage that wrote it again"
    with _open_stream(uri) as raw:
        fh = _Hashing(raw)
        try:
            yield from iter_tar(fh)
        except tarfile.TarError as exc:
            raise ValueError(f"shard {uri} is damaged ({exc}): {fix}") from exc
        if sha256:
            while fh.read(1 << 20):  # the tar's end padding
                pass
            if fh.digest.hexdigest() != sha256:
                raise ValueError(f"shard {uri} is corrupt: its SHA-256 is not the one recorded when it was written; "
                                 f"{fix}")


class _Hashing(io.RawIOBase):
    """A read-only stream that hashes what passes through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw, self.digest = raw, hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.digest.update(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def iter_tar(fh: IO[bytes]) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Stream ``(key, {suffix: bytes})`` groups from an open tar file object."""
    with tarfile.open(fileobj=fh, mode="r|") as tar:
        key, group = None, {}
        for member in tar:
            if not member.isfile():
                continue
            name_key, _, suffix = member.name.partition(".")
            if not name_key or not suffix or "/" in member.name or "\\" in member.name:
                # a path (../x.wav, a/b.wav) is no member a ShardWriter writes: a tar-slip or a foreign tar
                raise tarfile.TarError(f"member {member.name[:200]!r} is not <clip id>.<suffix>, as every member of a "
                                       "shard is")
            if key is not None and name_key != key:
                yield key, group
                group = {}
            key = name_key
            group[suffix] = tar.extractfile(member).read()
        if key is not None:
            yield key, group


def stem(uri: str | Path) -> str:
    """``.../shard-00003.tar`` (local or ``gs://``) -> ``shard-00003``, as the index tables name it."""
    return str(uri).rsplit("/", 1)[-1].removesuffix(".tar")


def wav_bytes(pcm16: np.ndarray, sample_rate: int) -> bytes:
    """Mono int16 samples -> a WAV file's bytes."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(np.ascontiguousarray(pcm16, dtype="<i2").tobytes())
    return buf.getvalue()


def read_wav(data: bytes) -> tuple[np.ndarray, int]:
    """A mono 16-bit WAV's bytes -> (float32 samples in [-1, 1), sample rate)."""
    with wave.open(io.BytesIO(data), "rb") as wav:
        if wav.getnchannels() != 1 or wav.getsampwidth() != 2:
            raise ValueError("expected mono 16-bit PCM")
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        return pcm.astype(np.float32) / 32768.0, wav.getframerate()
