"""Where bytes live: local paths and ``gs://`` URIs behind one small interface.

``google-cloud-storage`` honours ``STORAGE_EMULATOR_HOST``; when it is set we talk to that
server anonymously (the tests run a real GCS-compatible emulator that way).
"""

from __future__ import annotations

import contextlib
import csv
import os
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


def list_source(source: str | Path) -> list[str]:
    """Expand a source into the URIs of its candidate videos.

    A source is a local folder (every non-hidden file below it, recursively), a ``gs://``
    prefix (every object under it), or a ``.csv``/``.txt`` list of URIs (one per line; a CSV
    uses its ``uri`` column when it has one, else its first column).
    """
    source = str(source)
    if is_gcs(source):
        return list_gcs(source)
    path = Path(source)
    if path.is_dir():
        return sorted(
            str(p.resolve()) for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
    if path.is_file() and path.suffix.lower() in {".csv", ".txt", ".lst"}:
        return _read_uri_list(path)
    if path.is_file():
        return [str(path.resolve())]
    raise FileNotFoundError(f"source {source!r} is neither a folder, a gs:// prefix nor a URI list")


def _read_uri_list(path: Path) -> list[str]:
    text = path.read_text().splitlines()
    rows = [r for r in csv.reader(text) if r and r[0].strip() and not r[0].startswith("#")]
    if not rows:
        return []
    column = 0
    if path.suffix.lower() == ".csv" and "uri" in [c.strip().lower() for c in rows[0]]:
        column = [c.strip().lower() for c in rows[0]].index("uri")
        rows = rows[1:]
    base = path.parent
    uris = []
    for row in rows:
        uri = row[column].strip()
        if not is_gcs(uri) and not os.path.isabs(uri):
            uri = str((base / uri).resolve())
        uris.append(uri)
    return uris


@contextlib.contextmanager
def local_copy(uri: str) -> Iterator[Path]:
    """A local path holding ``uri``'s bytes: the file itself, or a streamed temporary download."""
    if not is_gcs(uri):
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
