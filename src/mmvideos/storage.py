"""Where bytes live: local paths and ``gs://`` URIs behind one small interface.

``google-cloud-storage`` honours ``STORAGE_EMULATOR_HOST``; when it is set we talk to that
server anonymously (the tests run a real GCS-compatible emulator that way).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

GCS_PREFIX = "gs://"
_CHUNK = 8 << 20


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
    blobs = gcs_client().list_blobs(bucket, prefix=key)
    return sorted(f"{GCS_PREFIX}{bucket}/{b.name}" for b in blobs if not b.name.endswith("/"))


#: File suffixes of a URI list source.
LIST_SUFFIXES = (".csv", ".txt", ".lst")


def list_source(source: str | Path) -> list[str]:
    """Expand a source into the URIs of its candidate videos.

    A source is a local folder (every non-hidden file below it, recursively), a ``gs://``
    folder (every object under ``<prefix>/``, not its neighbours: ``gs://b/raw`` does not list
    ``gs://b/raw_old/``), a single file or object, or a ``.csv``/``.txt``/``.lst`` list of URIs,
    local or on GCS: a ``.txt``/``.lst`` holds one URI per line, a ``.csv`` uses its ``uri``
    column when it has one, else its first. Relative entries are relative to the list's folder.
    """
    source = str(source)
    if source.lower().endswith(LIST_SUFFIXES):
        with local_copy(source) as path:
            return _read_uri_list(Path(path), base=source.rsplit("/", 1)[0] if is_gcs(source) else None)
    if is_gcs(source):
        bucket, key = split_gcs(source)
        return list_gcs(source.rstrip("/") + "/") or ([source] if gcs_client().bucket(bucket).blob(key).exists() else [])
    path = Path(source)
    if path.is_dir():
        return sorted(
            str(p.resolve()) for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
    if path.is_file():
        return [str(path.resolve())]
    raise FileNotFoundError(f"source {source!r} is neither a folder, a gs:// prefix nor a URI list")


def _read_uri_list(path: Path, base: str | None = None) -> list[str]:
    """The URIs of a list file; relative ones are joined to ``base`` (default: the file's folder)."""
    lines = [line.strip() for line in path.read_text().splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if path.suffix.lower() != ".csv":
        entries = lines
    else:
        rows = [row for row in csv.reader(lines) if row]
        header = [c.strip().lower() for c in rows[0]] if rows else []
        column = header.index("uri") if "uri" in header else 0
        entries = [row[column].strip() for row in rows[1 if "uri" in header else 0:] if len(row) > column]
    uris = []
    for uri in entries:
        if not is_gcs(uri) and not os.path.isabs(uri):
            uri = join(base, uri) if base else str((path.parent / uri).resolve())
        uris.append(uri)
    return uris


@contextlib.contextmanager
def local_copy(uri: str) -> Iterator[Path]:
    """A local path holding ``uri``'s bytes: the file itself, or a streamed temporary download;
    ``FileNotFoundError`` when there is none."""
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

        blob = gcs_client().bucket(bucket).blob(key)
        try:
            with blob.open("rb", chunk_size=_CHUNK) as src, open(dest, "wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
        except NotFound as exc:
            raise FileNotFoundError(f"no object {uri}") from exc
        yield dest


def exists(uri: str | Path) -> bool:
    """True when the file or object ``uri`` exists."""
    uri = str(uri)
    if is_gcs(uri):
        bucket, key = split_gcs(uri)
        return gcs_client().bucket(bucket).blob(key).exists()
    return os.path.isfile(uri)


def read_bytes(uri: str | Path) -> bytes:
    """The bytes of a small file or object; ``FileNotFoundError`` when there is none."""
    uri = str(uri)
    if not is_gcs(uri):
        return Path(uri).read_bytes()
    from google.api_core.exceptions import NotFound

    bucket, key = split_gcs(uri)
    try:
        return gcs_client().bucket(bucket).blob(key).download_as_bytes()
    except NotFound as exc:
        raise FileNotFoundError(f"no object {uri}") from exc


def put_file(local: str | Path, uri: str | Path) -> None:
    """Place the local file ``local`` at ``uri``, atomically: a reader sees the whole file or none.

    A local target is written as a temporary file beside it and renamed; a GCS upload only
    becomes visible once complete.
    """
    uri = str(uri)
    if is_gcs(uri):
        bucket, key = split_gcs(uri)
        gcs_client().bucket(bucket).blob(key).upload_from_filename(str(local))
        return
    from mmvideos.atomic import atomic_path

    with atomic_path(uri) as tmp:
        shutil.copyfile(local, tmp)


def put_bytes(data: bytes, uri: str | Path) -> None:
    """Write ``data`` to ``uri`` atomically (see :func:`put_file`)."""
    uri = str(uri)
    if is_gcs(uri):
        bucket, key = split_gcs(uri)
        gcs_client().bucket(bucket).blob(key).upload_from_string(data)
        return
    from mmvideos.atomic import atomic_open

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
                      for b in gcs_client().list_blobs(bucket, prefix=key) if not b.name.endswith("/"))
    root = Path(prefix)
    if not root.is_dir():
        return []
    return sorted((str(p), (st := p.stat()).st_mtime, st.st_size) for p in root.rglob("*") if p.is_file())


def transient_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "cannot be read now" (a missing file, I/O, a storage service error),
    as opposed to bad content: what is not committed as a result."""
    from google.api_core.exceptions import GoogleAPIError

    return OSError, GoogleAPIError


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
    then every file is uploaded, objects of an earlier output that the new one lacks are deleted,
    and the marker, listing the files, is written last (:func:`output_complete` checks it).
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
    """Make the ``gs://`` folder ``uri`` hold exactly the files of the local folder ``local``,
    marker last (see :func:`output_folder`); returns ``{relative name: generation}``."""
    from google.api_core.exceptions import NotFound

    bucket_name, key = split_gcs(check_output_uri(uri))
    bucket = gcs_client().bucket(bucket_name)
    with contextlib.suppress(NotFound):
        bucket.blob(f"{key}/{COMPLETE_MARKER}").delete()
    generations = {}
    for path in sorted(p for p in Path(local).rglob("*") if p.is_file()):
        name = path.relative_to(local).as_posix()
        blob = bucket.blob(f"{key}/{name}")
        blob.upload_from_filename(str(path))
        generations[name] = int(blob.generation or 0)
    for blob in gcs_client().list_blobs(bucket_name, prefix=f"{key}/"):
        if blob.name[len(key) + 1:] not in generations:
            with contextlib.suppress(NotFound):
                blob.delete()
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
