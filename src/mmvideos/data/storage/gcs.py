"""The ``gs://`` backend: every storage operation on Google Cloud Storage, each retried.

``google-cloud-storage`` honours ``STORAGE_EMULATOR_HOST``; when it is set we talk to that
server anonymously (the tests run a real GCS-compatible emulator that way). The library's own
retry (up to 120 s per call) is turned off: :func:`mmvideos.data.storage.retry.retrying` is the
one policy. :mod:`mmvideos.data.storage` dispatches here for ``gs://`` URIs.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

from mmvideos.data.storage.retry import attempt_timeout, retrying

GCS_PREFIX = "gs://"


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


def no_library_retry():
    """google-cloud-storage's own retry (up to 120 s per call) is replaced by :func:`retrying`."""
    return None


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
            return list(gcs_client().list_blobs(bucket, prefix=prefix, retry=no_library_retry(),
                                                timeout=attempt_timeout()))
        except NotFound as exc:
            raise FileNotFoundError(f"no bucket gs://{bucket} (or no access to it)") from exc

    return retrying(f"listing gs://{bucket}/{prefix}", call)


class ShortRead(OSError):
    """An object read with fewer (or more) bytes than its metadata says it holds: a truncated
    response the server sent without hash headers. Transient: read again."""


def _object(uri: str, generation: int | None = None):
    """The object's metadata, a blob pinned to its generation (at ``generation``, when given);
    ``FileNotFoundError`` when there is none (or that generation is gone). One attempt: callers
    run it under :func:`retrying`."""
    from google.api_core.exceptions import NotFound

    bucket, key = split_gcs(uri)
    try:
        blob = gcs_client().bucket(bucket).get_blob(key, generation=generation, retry=no_library_retry(),
                                                    timeout=attempt_timeout())
    except NotFound:
        blob = None
    if blob is None:
        changed = f" at generation {generation} (rewritten or deleted since it was listed)" if generation else ""
        raise FileNotFoundError(f"no object {uri}{changed}")
    return blob


def download(uri: str, dest: Path, generation: int | None = None) -> None:
    """Download the object ``uri`` (at ``generation``, when given) to the local file ``dest``;
    ``FileNotFoundError`` when there is none (or that generation is gone).

    The object's metadata is read first and the download pinned to its generation, so a body
    shorter than its listed size (truncated without hash headers) is a :class:`ShortRead`,
    retried like any transient failure, never a file taken as whole.
    """
    from google.api_core.exceptions import NotFound

    def call() -> None:
        try:
            blob = _object(uri, generation)
            blob.download_to_filename(str(dest), retry=no_library_retry(), timeout=attempt_timeout())
        except (NotFound, FileNotFoundError) as exc:  # gone between the two requests, or before
            dest.unlink(missing_ok=True)
            raise FileNotFoundError(str(exc) if isinstance(exc, FileNotFoundError) else f"no object {uri}") from exc
        if dest.stat().st_size != int(blob.size or 0):
            raise ShortRead(5, f"read {dest.stat().st_size} bytes of {uri}, which holds {blob.size}")

    retrying(f"reading {uri}", call)


class Reader(io.RawIOBase):
    """A read-only stream over one object generation, read in ranged requests of ``chunk`` bytes,
    each under :func:`retrying` (its timeout and the process's storage deadline) and checked for
    its length: the stream :func:`mmvideos.data.shards.iter_shard` reads shards through."""

    def __init__(self, uri: str, chunk: int = 8 << 20) -> None:
        self.uri, self.chunk, self._pos, self._buf = uri, chunk, 0, b""
        self._blob = retrying(f"reading {uri}", lambda: _object(uri))
        self.size = int(self._blob.size or 0)

    def readable(self) -> bool:
        return True

    def _fetch(self) -> bytes:
        start, end = self._pos, min(self.size, self._pos + self.chunk) - 1

        def call() -> bytes:
            data = self._blob.download_as_bytes(start=start, end=end, retry=no_library_retry(),
                                                timeout=attempt_timeout())
            if len(data) != end - start + 1:
                raise ShortRead(5, f"read {len(data)} bytes of {self.uri} at {start}, expected {end - start + 1}")
            return data

        return retrying(f"reading {self.uri}", call)

    def readinto(self, buffer) -> int:
        if not self._buf and self._pos < self.size:
            self._buf = self._fetch()
            self._pos += len(self._buf)
        n = min(len(buffer), len(self._buf))
        buffer[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def exists(uri: str) -> bool:
    """True when the object ``uri`` exists."""
    bucket, key = split_gcs(uri)
    return retrying(f"looking up {uri}", lambda: gcs_client().bucket(bucket).blob(key).exists(
        retry=no_library_retry(), timeout=attempt_timeout()))


def read_bytes(uri: str) -> bytes:
    """The bytes of the object ``uri``; ``FileNotFoundError`` when there is none."""
    from google.api_core.exceptions import NotFound

    def call() -> bytes:
        blob = _object(uri)
        try:
            data = blob.download_as_bytes(retry=no_library_retry(), timeout=attempt_timeout())
        except NotFound as exc:  # gone since its metadata was read
            raise FileNotFoundError(f"no object {uri}") from exc
        if len(data) != int(blob.size or 0):
            raise ShortRead(5, f"read {len(data)} bytes of {uri}, which holds {blob.size}")
        return data

    return retrying(f"reading {uri}", call)


def upload_file(local: str | Path, uri: str) -> None:
    """Upload a local file to ``uri`` (visible only once complete)."""
    bucket, key = split_gcs(uri)
    retrying(f"writing {uri}", lambda: gcs_client().bucket(bucket).blob(key).upload_from_filename(
        str(local), retry=no_library_retry(), timeout=attempt_timeout()))


def upload_bytes(data: bytes, uri: str) -> None:
    """Upload ``data`` to ``uri`` (visible only once complete)."""
    bucket, key = split_gcs(uri)
    retrying(f"writing {uri}", lambda: gcs_client().bucket(bucket).blob(key).upload_from_string(
        data, retry=no_library_retry(), timeout=attempt_timeout()))


def delete(uri: str) -> None:
    """Remove an object (no error when it is already gone)."""
    from google.api_core.exceptions import NotFound

    bucket, key = split_gcs(uri)

    def call() -> None:
        with contextlib.suppress(NotFound):
            gcs_client().bucket(bucket).blob(key).delete(retry=no_library_retry(), timeout=attempt_timeout())

    retrying(f"deleting {uri}", call)


def list_files(prefix: str) -> list[tuple[str, float, int]]:
    """``(uri, modified time, size)`` of every object under a ``gs://`` prefix, sorted."""
    bucket, key = split_gcs(prefix.rstrip("/") + "/")
    return sorted((f"{GCS_PREFIX}{bucket}/{b.name}", b.updated.timestamp() if b.updated else 0.0, int(b.size or 0))
                  for b in list_blobs(bucket, key) if not b.name.endswith("/"))


def move(uri: str, dest: str) -> None:
    """Move the object ``uri`` to ``dest`` in the same bucket (a server-side copy, then a delete);
    ``FileNotFoundError`` when there is none."""
    from google.api_core.exceptions import NotFound

    bucket, key = split_gcs(uri)
    dest_bucket, dest_key = split_gcs(dest)

    def call() -> None:
        client = gcs_client()
        try:
            client.bucket(bucket).copy_blob(client.bucket(bucket).blob(key), client.bucket(dest_bucket), dest_key,
                                            retry=no_library_retry(), timeout=attempt_timeout())
        except NotFound as exc:
            raise FileNotFoundError(f"no object {uri}") from exc

    retrying(f"moving {uri}", call)
    delete(uri)


def object_digests(prefix: str) -> dict[str, tuple[int, str]]:
    """``{uri: (size, base64 MD5)}`` of every object under a ``gs://`` prefix (one listing)."""
    bucket, key = split_gcs(prefix.rstrip("/") + "/")
    return {f"{GCS_PREFIX}{bucket}/{b.name}": (int(b.size or 0), b.md5_hash or "") for b in list_blobs(bucket, key)}


def versions(uris: list[str]) -> dict[str, str]:
    """``{uri: "size:generation:md5"}`` of ``gs://`` objects, one listing per bucket of the URIs'
    common folder; ``missing`` when there is none."""
    found: dict[str, str] = {}
    by_bucket: dict[str, list[str]] = {}
    for uri in uris:
        by_bucket.setdefault(split_gcs(uri)[0], []).append(uri)
    for bucket, members in by_bucket.items():
        folder = os.path.commonprefix([split_gcs(uri)[1] for uri in members]).rpartition("/")[0]
        listed = {f"{GCS_PREFIX}{bucket}/{b.name}": f"{b.size}:{b.generation}:{b.md5_hash}"
                  for b in list_blobs(bucket, folder)}
        found |= {uri: listed.get(uri, "missing") for uri in members}
    return found


#: The object written last into a ``gs://`` output folder: the folder's files with their GCS
#: generations. A reader that finds it, and finds those generations, sees the whole output.
COMPLETE_MARKER = "_COMPLETE.json"


def upload_folder(local: str | Path, uri: str) -> dict[str, int]:
    """Make the ``gs://`` folder ``uri`` hold the files of the local folder ``local`` in place of
    an earlier output's, marker last (see :func:`mmvideos.data.storage.output_folder`); returns
    ``{relative name: generation}``. Every request goes through :func:`retrying`."""
    bucket_name, key = split_gcs(uri)
    marker_uri = f"{GCS_PREFIX}{bucket_name}/{key}/{COMPLETE_MARKER}"
    try:  # what an earlier output wrote here (its marker lists it): the only files it may remove
        earlier = set(json.loads(read_bytes(marker_uri))["files"])
    except FileNotFoundError:
        earlier = set()
    delete(marker_uri)
    generations = {}
    for path in sorted(p for p in Path(local).rglob("*") if p.is_file()):
        name = path.relative_to(local).as_posix()
        generations[name] = _upload(path, f"{GCS_PREFIX}{bucket_name}/{key}/{name}")
    for name in sorted(earlier - set(generations)):  # an earlier output's files the new one lacks
        delete(f"{GCS_PREFIX}{bucket_name}/{key}/{name}")
    marker = json.dumps({"files": generations}, indent=2, sort_keys=True)
    upload_bytes(marker.encode(), marker_uri)
    return generations


def _upload(local: Path, uri: str) -> int:
    """Upload ``local`` to ``uri`` (retried); returns the new object's generation."""
    bucket, key = split_gcs(uri)

    def call() -> int:
        blob = gcs_client().bucket(bucket).blob(key)
        blob.upload_from_filename(str(local), retry=no_library_retry(), timeout=attempt_timeout())
        return int(blob.generation or 0)

    return retrying(f"writing {uri}", call)


def output_complete(uri: str) -> bool:
    """True when the ``gs://`` output folder ``uri`` was completely written by
    :func:`upload_folder` and none of its files was replaced since."""
    try:
        marker = json.loads(read_bytes(f"{uri.rstrip('/')}/{COMPLETE_MARKER}"))
    except FileNotFoundError:
        return False
    bucket_name, key = split_gcs(uri.rstrip("/"))
    found = {b.name[len(key) + 1:]: int(b.generation or 0) for b in list_blobs(bucket_name, f"{key}/")}
    return all(found.get(name) == generation for name, generation in marker["files"].items())
