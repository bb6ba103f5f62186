"""Where bytes live: local paths and ``gs://`` URIs behind one small interface.

``google-cloud-storage`` honours ``STORAGE_EMULATOR_HOST``; when it is set we talk to that
server anonymously (the tests run a real GCS-compatible emulator that way).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

GCS_PREFIX = "gs://"
_CHUNK = 8 << 20
T = TypeVar("T")
log = logging.getLogger(__name__)

#: Seconds storage may keep failing before the process gives up on it: a dead backend ends the
#: stage in minutes, not in hours of per-object retries. ``MMVIDEOS_STORAGE_DEADLINE_S`` sets it.
DEFAULT_DEADLINE_S = 120.0
#: Tries per call while the backend is within its deadline (backoff 0.5, 1, 2, 4... s, at most 10).
ATTEMPTS = 5


class StorageUnavailable(OSError):
    """Storage kept failing (network, 5xx, permissions, I/O) past its retries or the deadline:
    nothing was learnt about the file, so it is never a reject; the stage fails and a re-run
    examines the file again."""


class _Outage:
    """When storage started failing without a success since (process-wide)."""

    since: float | None = None


def deadline_s() -> float:
    """The storage deadline of this process (``MMVIDEOS_STORAGE_DEADLINE_S``, default 120 s)."""
    value = os.environ.get("MMVIDEOS_STORAGE_DEADLINE_S", "")
    try:
        return float(value) if value else DEFAULT_DEADLINE_S
    except ValueError:
        raise ValueError(f"MMVIDEOS_STORAGE_DEADLINE_S must be a number of seconds, got {value!r}") from None


def _is_transient(exc: BaseException) -> bool:
    """A failure to read now, not a property of the file (a missing file is neither: it is gone)."""
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError, StorageUnavailable)):
        return False
    from google.api_core.exceptions import NotFound

    return isinstance(exc, transient_errors()) and not isinstance(exc, NotFound)


def retrying(what: str, call: Callable[[], T]) -> T:
    """``call()``, retried with bounded exponential backoff on transient storage errors.

    Once storage has failed without a success for :func:`deadline_s` seconds every call fails
    at once with :class:`StorageUnavailable`, so a dead backend costs the deadline once, not per
    object. Other errors (a missing file, bad content) pass through untouched.
    """
    for attempt in range(ATTEMPTS):
        if _Outage.since is not None and time.monotonic() - _Outage.since > deadline_s():
            raise StorageUnavailable(f"{what}: storage has not answered for {deadline_s():.0f} s "
                                     "(MMVIDEOS_STORAGE_DEADLINE_S); check it and run again")
        try:
            result = call()
        except Exception as exc:
            if not _is_transient(exc):
                raise
            _Outage.since = _Outage.since or time.monotonic()
            if attempt == ATTEMPTS - 1:
                raise StorageUnavailable(f"{what}: {type(exc).__name__}: {_short(exc)} "
                                         f"(after {ATTEMPTS} tries); run again once storage answers") from exc
            log.warning("%s: %s, retrying", what, _short(exc))
            left = deadline_s() - (time.monotonic() - _Outage.since)
            time.sleep(max(0.0, min(0.5 * 2 ** attempt, 10.0, left)))
        else:
            _Outage.since = None
            return result
    raise AssertionError("unreachable")


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def _no_library_retry():
    """google-cloud-storage's own retry (up to 120 s per call) is replaced by :func:`retrying`."""
    return None


def is_gcs(uri: str) -> bool:
    """True for a ``gs://bucket/key`` URI."""
    return uri.startswith(GCS_PREFIX)


def split_gcs(uri: str) -> tuple[str, str]:
    """``gs://bucket/a/b`` -> ``("bucket", "a/b")``."""
    if not is_gcs(uri):
        raise ValueError(f"not a gs:// URI: {uri!r}")
    bucket, _, key = uri[len(GCS_PREFIX):].partition("/")
    if not bucket:
        raise ValueError(f"gs:// URI without a bucket: {uri!r}")
    return bucket, key


def gcs_client():
    """A ``google.cloud.storage.Client``; anonymous against ``STORAGE_EMULATOR_HOST``."""
    from google.cloud import storage

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT", "local"),
                              credentials=AnonymousCredentials())
    return storage.Client()


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


def list_gcs(prefix_uri: str) -> list[str]:
    """All object URIs under a ``gs://`` prefix, sorted; "directory" placeholders skipped."""
    bucket, key = split_gcs(prefix_uri)
    blobs = list_blobs(bucket, key)
    return sorted(f"{GCS_PREFIX}{bucket}/{b.name}" for b in blobs if not b.name.endswith("/"))


def list_blobs(bucket: str, prefix: str) -> list:
    """Every blob under ``prefix`` (one listing, retried); a missing bucket is ``FileNotFoundError``."""
    from google.api_core.exceptions import NotFound

    def call():
        try:
            return list(gcs_client().list_blobs(bucket, prefix=prefix, retry=_no_library_retry()))
        except NotFound as exc:
            raise FileNotFoundError(f"no bucket gs://{bucket} (or no access to it)") from exc

    return retrying(f"listing gs://{bucket}/{prefix}", call)


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
    bucket, key = split_gcs(uri)
    suffix = Path(key).suffix
    with tempfile.TemporaryDirectory(prefix="mmvideos-") as tmp:
        dest = Path(tmp) / f"object{suffix}"
        from google.api_core.exceptions import NotFound

        def download() -> None:
            blob = gcs_client().bucket(bucket).blob(key, generation=generation)
            try:
                blob.download_to_filename(str(dest), retry=_no_library_retry())
            except NotFound as exc:
                dest.unlink(missing_ok=True)
                changed = f" at generation {generation} (rewritten or deleted since it was listed)" if generation else ""
                raise FileNotFoundError(f"no object {uri}{changed}") from exc

        retrying(f"reading {uri}", download)
        yield dest


def exists(uri: str | Path) -> bool:
    """True when the file or object ``uri`` exists."""
    uri = str(uri)
    if is_gcs(uri):
        bucket, key = split_gcs(uri)
        return retrying(f"looking up {uri}", lambda: gcs_client().bucket(bucket).blob(key).exists(
            retry=_no_library_retry()))
    return os.path.isfile(uri)


def read_bytes(uri: str | Path) -> bytes:
    """The bytes of a small file or object; ``FileNotFoundError`` when there is none."""
    uri = str(uri)
    if not is_gcs(uri):
        return Path(uri).read_bytes()
    from google.api_core.exceptions import NotFound

    bucket, key = split_gcs(uri)

    def call() -> bytes:
        try:
            return gcs_client().bucket(bucket).blob(key).download_as_bytes(retry=_no_library_retry())
        except NotFound as exc:
            raise FileNotFoundError(f"no object {uri}") from exc

    return retrying(f"reading {uri}", call)


def put_file(local: str | Path, uri: str | Path) -> None:
    """Place the local file ``local`` at ``uri``, atomically: a reader sees the whole file or none.

    A local target is written as a temporary file beside it and renamed; a GCS upload only
    becomes visible once complete.
    """
    uri = str(uri)
    if is_gcs(uri):
        bucket, key = split_gcs(uri)
        retrying(f"writing {uri}", lambda: gcs_client().bucket(bucket).blob(key).upload_from_filename(
            str(local), retry=_no_library_retry()))
        return
    from mmvideos.data.atomic import atomic_path

    with atomic_path(uri) as tmp:
        shutil.copyfile(local, tmp)


def put_bytes(data: bytes, uri: str | Path) -> None:
    """Write ``data`` to ``uri`` atomically (see :func:`put_file`)."""
    uri = str(uri)
    if is_gcs(uri):
        bucket, key = split_gcs(uri)
        retrying(f"writing {uri}", lambda: gcs_client().bucket(bucket).blob(key).upload_from_string(
            data, retry=_no_library_retry()))
        return
    from mmvideos.data.atomic import atomic_open

    with atomic_open(uri, "wb") as fh:
        fh.write(data)


def delete(uri: str | Path) -> None:
    """Remove a file or object (no error when it is already gone)."""
    uri = str(uri)
    if is_gcs(uri):
        from google.api_core.exceptions import NotFound

        bucket, key = split_gcs(uri)
        with contextlib.suppress(NotFound):
            gcs_client().bucket(bucket).blob(key).delete()
        return
    Path(uri).unlink(missing_ok=True)


def list_files(prefix: str | Path) -> list[tuple[str, float, int]]:
    """``(uri, modified time in seconds since the epoch, size)`` of every file under a folder or
    ``gs://`` prefix (one listing), sorted; a missing folder lists nothing."""
    prefix = str(prefix)
    if is_gcs(prefix):
        bucket, key = split_gcs(prefix.rstrip("/") + "/")
        return sorted((f"{GCS_PREFIX}{bucket}/{b.name}", b.updated.timestamp() if b.updated else 0.0, int(b.size or 0))
                      for b in list_blobs(bucket, key) if not b.name.endswith("/"))
    root = Path(prefix)
    if not root.is_dir():
        return []
    return sorted((str(p), (st := p.stat()).st_mtime, st.st_size) for p in root.rglob("*") if p.is_file())


def transient_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "cannot be read now" (a missing file, I/O, a storage service error),
    as opposed to bad content: what is not committed as a result."""
    from google.api_core.exceptions import GoogleAPIError
    from google.auth.exceptions import TransportError

    try:  # a download whose checksum did not match: read it again
        from google.resumable_media.common import DataCorruption
    except ImportError:  # newer google-cloud-storage
        from google.cloud.storage.exceptions import DataCorruption

    return OSError, GoogleAPIError, TransportError, DataCorruption


def file_versions(uris: list[str]) -> dict[str, str]:
    """``{uri: version}`` naming each file's current content without reading it: size and mtime
    (ns) of a local file, size, generation and MD5 of a GCS object (one listing per bucket, of
    the URIs' common folder); ``missing`` when there is none. Caches key on these, not on paths.
    """
    versions: dict[str, str] = {}
    by_bucket: dict[str, list[str]] = {}
    for uri in uris:
        if is_gcs(uri):
            by_bucket.setdefault(split_gcs(uri)[0], []).append(uri)
            continue
        try:
            stat = os.stat(uri)
            versions[uri] = f"{stat.st_size}:{stat.st_mtime_ns}"
        except FileNotFoundError:
            versions[uri] = "missing"
    for bucket, members in by_bucket.items():
        folder = os.path.commonprefix([split_gcs(uri)[1] for uri in members]).rpartition("/")[0]
        listed = {f"{GCS_PREFIX}{bucket}/{b.name}": f"{b.size}:{b.generation}:{b.md5_hash}"
                  for b in list_blobs(bucket, folder)}
        versions |= {uri: listed.get(uri, "missing") for uri in members}
    return versions


#: The object written last into a ``gs://`` output folder: the folder's files with their GCS
#: generations. A reader that finds it, and finds those generations, sees the whole output.
COMPLETE_MARKER = "_COMPLETE.json"


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
    with tempfile.TemporaryDirectory(prefix="mmvideos-out-") as tmp:
        yield Path(tmp)
        upload_folder(Path(tmp), uri)


def upload_folder(local: str | Path, uri: str) -> dict[str, int]:
    """Make the ``gs://`` folder ``uri`` hold the files of the local folder ``local`` in place of
    an earlier output's, marker last (see :func:`output_folder`); returns ``{relative name:
    generation}``."""
    from google.api_core.exceptions import NotFound

    bucket_name, key = split_gcs(check_output_uri(uri))
    bucket = gcs_client().bucket(bucket_name)
    try:  # what an earlier output wrote here (its marker lists it): the only files it may remove
        earlier = set(json.loads(bucket.blob(f"{key}/{COMPLETE_MARKER}").download_as_bytes())["files"])
    except NotFound:
        earlier = set()
    with contextlib.suppress(NotFound):
        bucket.blob(f"{key}/{COMPLETE_MARKER}").delete()
    generations = {}
    for path in sorted(p for p in Path(local).rglob("*") if p.is_file()):
        name = path.relative_to(local).as_posix()
        blob = bucket.blob(f"{key}/{name}")
        blob.upload_from_filename(str(path))
        generations[name] = int(blob.generation or 0)
    for name in sorted(earlier - set(generations)):  # an earlier output's files the new one lacks
        with contextlib.suppress(NotFound):
            bucket.blob(f"{key}/{name}").delete()
    marker = json.dumps({"files": generations}, indent=2, sort_keys=True)
    bucket.blob(f"{key}/{COMPLETE_MARKER}").upload_from_string(marker, content_type="application/json")
    return generations


def output_complete(uri: str) -> bool:
    """True when the ``gs://`` output folder ``uri`` was completely written by
    :func:`output_folder` and none of its files was replaced since."""
    try:
        marker = json.loads(read_bytes(join(uri, COMPLETE_MARKER)))
    except FileNotFoundError:
        return False
    bucket_name, key = split_gcs(uri.rstrip("/"))
    found = {b.name[len(key) + 1:]: int(b.generation or 0)
             for b in gcs_client().list_blobs(bucket_name, prefix=f"{key}/")}
    return all(found.get(name) == generation for name, generation in marker["files"].items())


@contextlib.contextmanager
def output_file(uri: str | Path) -> Iterator[Path]:
    """A local path to write one file into, placed at ``uri`` (local or ``gs://``) atomically
    when the block succeeds (:func:`put_file`); nothing is written if it raises."""
    uri = check_output_uri(uri)
    with tempfile.TemporaryDirectory(prefix="mmvideos-out-") as tmp:
        path = Path(tmp) / Path(uri.rsplit("/", 1)[-1]).name
        yield path
        put_file(path, uri)
