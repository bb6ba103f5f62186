"""Where bytes live: local paths and ``gs://`` URIs behind one small interface.

Each operation takes a local path or a ``gs://`` URI and does the same thing on both: the local
file system here, Google Cloud Storage in :mod:`~mmvideos.data.storage.gcs`. Every storage call
on GCS goes through the one retry policy of :mod:`~mmvideos.data.storage.retry`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from mmvideos.data.storage import gcs
from mmvideos.data.storage.gcs import COMPLETE_MARKER, GCS_PREFIX, gcs_client, is_gcs, list_blobs, list_gcs, split_gcs
from mmvideos.data.storage.retry import (
    ATTEMPTS,
    DEFAULT_DEADLINE_S,
    StorageUnavailable,
    deadline_s,
    retrying,
    transient_errors,
)

__all__ = ["ATTEMPTS", "COMPLETE_MARKER", "DEFAULT_DEADLINE_S", "GCS_PREFIX", "StorageUnavailable",
           "check_output_uri", "deadline_s", "delete", "exists", "file_versions", "gcs_client", "is_gcs", "join",
           "list_blobs", "list_files", "list_gcs", "local_copy", "output_complete", "output_file", "output_folder",
           "put_bytes", "put_file", "read_bytes", "read_parquet", "retrying", "split_gcs", "transient_errors",
           "upload_folder"]


def join(folder: str | Path, *names: str) -> str:
    """``folder/name/...`` for a local folder or a ``gs://`` prefix."""
    folder = str(folder)
    if is_gcs(folder):
        return "/".join([folder.rstrip("/"), *names])
    return str(Path(folder, *names))


def read_parquet(uri: str | Path):
    """A parquet table from a local path or a ``gs://`` URI."""
    import pandas as pd

    with local_copy(str(uri)) as path:
        return pd.read_parquet(path)


@contextlib.contextmanager
def local_copy(uri: str, generation: int | None = None) -> Iterator[Path]:
    """A local path holding ``uri``'s bytes: the file itself, or a temporary download
    (retried, :func:`retrying`); ``FileNotFoundError`` when there is none.

    ``generation`` pins a GCS object to the version listed earlier: an object rewritten or
    deleted since is ``FileNotFoundError`` too, never the new bytes under the old identity.
    """
    if not is_gcs(uri):
        if not os.path.exists(uri):
            raise FileNotFoundError(f"no file {uri}")
        yield Path(uri)
        return
    with _scratch("copy") as tmp:
        dest = Path(tmp) / f"object{Path(split_gcs(uri)[1]).suffix}"
        gcs.download(uri, dest, generation)
        yield dest


def exists(uri: str | Path) -> bool:
    """True when the file or object ``uri`` exists."""
    uri = str(uri)
    return gcs.exists(uri) if is_gcs(uri) else os.path.isfile(uri)


def read_bytes(uri: str | Path) -> bytes:
    """The bytes of a small file or object; ``FileNotFoundError`` when there is none."""
    uri = str(uri)
    return gcs.read_bytes(uri) if is_gcs(uri) else Path(uri).read_bytes()


def _scratch(what: str):
    """:func:`mmvideos.data.atomic.scratch_dir` (imported here: storage loads without pandas)."""
    from mmvideos.data.atomic import scratch_dir

    return scratch_dir(what)


def put_file(local: str | Path, uri: str | Path) -> None:
    """Place the local file ``local`` at ``uri``, atomically: a reader sees the whole file or none.

    A local target is written as a temporary file beside it and renamed; a GCS upload only
    becomes visible once complete.
    """
    uri = str(uri)
    if is_gcs(uri):
        gcs.upload_file(local, uri)
        return
    from mmvideos.data.atomic import atomic_path

    with atomic_path(uri) as tmp:
        shutil.copyfile(local, tmp)


def put_bytes(data: bytes, uri: str | Path) -> None:
    """Write ``data`` to ``uri`` atomically (see :func:`put_file`)."""
    uri = str(uri)
    if is_gcs(uri):
        gcs.upload_bytes(data, uri)
        return
    from mmvideos.data.atomic import atomic_open

    with atomic_open(uri, "wb") as fh:
        fh.write(data)


def delete(uri: str | Path) -> None:
    """Remove a file or object (no error when it is already gone)."""
    uri = str(uri)
    if is_gcs(uri):
        gcs.delete(uri)
        return
    Path(uri).unlink(missing_ok=True)


def list_files(prefix: str | Path) -> list[tuple[str, float, int]]:
    """``(uri, modified time in seconds since the epoch, size)`` of every file under a folder or
    ``gs://`` prefix (one listing), sorted; a missing folder lists nothing."""
    prefix = str(prefix)
    if is_gcs(prefix):
        return gcs.list_files(prefix)
    root = Path(prefix)
    if not root.is_dir():
        return []
    return sorted((str(p), (st := p.stat()).st_mtime, st.st_size) for p in root.rglob("*") if p.is_file())


def file_versions(uris: list[str]) -> dict[str, str]:
    """``{uri: version}`` naming each file's current content without reading it: size and mtime
    (ns) of a local file, size, generation and MD5 of a GCS object (one listing per bucket, of
    the URIs' common folder); ``missing`` when there is none. Caches key on these, not on paths.
    """
    versions = gcs.versions([uri for uri in uris if is_gcs(uri)])
    for uri in uris:
        if is_gcs(uri):
            continue
        try:
            stat = os.stat(uri)
            versions[uri] = f"{stat.st_size}:{stat.st_mtime_ns}"
        except FileNotFoundError:
            versions[uri] = "missing"
    return versions


def check_output_uri(uri: str | Path) -> str:
    """``uri`` as a string if it names a local path or a ``gs://bucket/folder``; ``ValueError``
    for anything else with a scheme (``s3://``, ``gs:/x``), so that no local folder named
    ``gs:`` (or ``s3:``) is ever made."""
    uri = str(uri)
    if is_gcs(uri):
        bucket, key = split_gcs(uri)
        if not key.strip("/"):
            raise ValueError(f"output {uri!r} names a whole bucket: give a folder, e.g. gs://{bucket}/mmvideos")
        return uri.rstrip("/")
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", uri):
        raise ValueError(f"output {uri!r}: only a local path or a gs://bucket/folder URI is supported")
    return uri


@contextlib.contextmanager
def output_folder(uri: str | Path) -> Iterator[Path]:
    """A local folder to write a stage's output into, placed at ``uri`` when the block succeeds.

    A local ``uri`` is the folder itself (created; every file the stages write is atomic). A
    ``gs://`` folder gets a temporary local folder that is uploaded after the block succeeds and
    discarded if it raises: the completion marker (:data:`COMPLETE_MARKER`) is deleted first,
    then every file is uploaded, files of an earlier output (listed by its marker) that the new
    one lacks are deleted (never anything the stage did not write), and the marker, listing the files, is written last (:func:`output_complete` checks it).
    Anything else is refused (:func:`check_output_uri`).
    """
    uri = check_output_uri(uri)
    if not is_gcs(uri):
        Path(uri).mkdir(parents=True, exist_ok=True)
        yield Path(uri)
        return
    with _scratch("out") as tmp:
        yield Path(tmp)
        upload_folder(Path(tmp), uri)


def upload_folder(local: str | Path, uri: str) -> dict[str, int]:
    """Make the ``gs://`` folder ``uri`` hold the files of the local folder ``local`` in place of
    an earlier output's, marker last (see :func:`output_folder`); returns ``{relative name:
    generation}``."""
    return gcs.upload_folder(local, check_output_uri(uri))


def output_complete(uri: str) -> bool:
    """True when the ``gs://`` output folder ``uri`` was completely written by
    :func:`output_folder` and none of its files was replaced since."""
    return gcs.output_complete(uri)


@contextlib.contextmanager
def output_file(uri: str | Path) -> Iterator[Path]:
    """A local path to write one file into, placed at ``uri`` (local or ``gs://``) atomically
    when the block succeeds (:func:`put_file`); nothing is written if it raises."""
    uri = check_output_uri(uri)
    with _scratch("out") as tmp:
        path = Path(tmp) / Path(uri.rsplit("/", 1)[-1]).name
        yield path
        put_file(path, uri)
