"""A source of videos, listed: a folder, a ``gs://`` prefix, one file, or a URI list (CSV/text).

:func:`scan_source` turns a source into the URIs of its candidate videos (and the entries it
refuses, each with a reason); :func:`source_entries` adds each file's size and version (mtime
locally, generation and MD5 on GCS) without reading it, and :func:`source_fingerprint` hashes
those, so that it changes exactly when a video is added, removed or rewritten. Ingest lists its
source this way, and so does its leakage guard for the benchmark folders it excludes.
"""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path

from mmvideos.data import storage
from mmvideos.data.storage import exists, is_gcs, join, list_gcs, local_copy
from mmvideos.demo.corpus import DEMO_VIDEOS

#: File suffixes of a URI list source.
LIST_SUFFIXES = (".csv", ".txt", ".lst")


def source_uris(source: str | Path, allow_outside: bool | None = None) -> list[str]:
    """The URIs of a source's candidate videos (:func:`scan_source` without its refusals)."""
    return scan_source(source, allow_outside)[0]


def allow_outside_default() -> bool:
    """Whether URI lists may name files outside their roots: ``MMVIDEOS_ALLOW_OUTSIDE=1``
    (what ``mmvideos --allow-outside`` sets, so the pipeline's tasks see it too)."""
    return os.environ.get("MMVIDEOS_ALLOW_OUTSIDE", "") in ("1", "true", "yes")


def scan_source(source: str | Path, allow_outside: bool | None = None) -> tuple[list[str], list[tuple[str, str]]]:
    """Expand a source into the URIs of its candidate videos and the entries it refuses.

    A source is a local folder (every non-hidden file below it, recursively), a ``gs://``
    folder (every object under ``<prefix>/``, not its neighbours: ``gs://b/raw`` does not list
    ``gs://b/raw_old/``), a single file or object, or a ``.csv``/``.txt``/``.lst`` list of URIs,
    local or on GCS: a ``.txt``/``.lst`` holds one URI per line, a ``.csv`` uses its ``uri``
    column when it has one, else its first. Relative entries are relative to the list's folder.

    Nothing is dropped without a word: the second list holds ``(uri, reason)`` for every entry
    that is not a candidate: a hidden file or folder, a list row starting with ``#``, an
    unreadable sub-folder, a symlink
    loop, a symlink leaving the folder, a list entry outside the list's folder (unless
    ``allow_outside``; ``gs://`` entries are always allowed). A source that lists nothing at all
    is an error (``FileNotFoundError``), not a run over zero videos.
    """
    source = str(source)
    allow = allow_outside_default() if allow_outside is None else allow_outside
    if source.lower().endswith(LIST_SUFFIXES):
        with local_copy(source) as path:
            uris, refused = _read_uri_list(Path(path), source.rsplit("/", 1)[0] if is_gcs(source) else None, allow)
    elif is_gcs(source):
        uris = list_gcs(source.rstrip("/") + "/") or ([source] if exists(source) else [])
        refused = []
    elif Path(source).is_dir():
        uris, refused = _walk(Path(source))
    elif Path(source).is_file():
        uris, refused = [str(Path(source).resolve())], []
    else:
        raise FileNotFoundError(f"source {source!r} is neither a folder, a gs:// prefix nor a URI list")
    if not uris and not refused:
        raise FileNotFoundError(f"source {source!r} lists no files: check the folder, prefix or list")
    return uris, refused


def _walk(folder: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """Files below a local folder, and the entries refused (unreadable, loops, links leaving it)."""
    top = folder.resolve()
    uris, refused = [], []

    def unreadable(exc: OSError) -> None:
        refused.append((str(exc.filename), f"unreadable folder: {exc.strerror or exc}"))

    for dirpath, dirnames, filenames in os.walk(folder, onerror=unreadable):
        refused += [(str(Path(dirpath, d)), "hidden folder (its name starts with '.'): not read")
                    for d in sorted(dirnames) if d.startswith(".")]
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in [d for d in dirnames if Path(dirpath, d).is_symlink()]:  # os.walk does not follow them
            dirnames.remove(name)
            link = Path(dirpath, name)
            try:
                real = link.resolve(strict=True)
            except (RuntimeError, OSError):
                refused.append((str(link), "symlink loop"))
                continue
            if link.parent.resolve().is_relative_to(real):
                refused.append((str(link), f"symlink loop (to {real}, a folder above it)"))
                continue
            refused.append((str(link), f"symlinked folder to {real}, outside the source folder: not followed"
                            if not real.is_relative_to(top) else
                            "symlinked folder inside the source: not followed (its files are listed where they are)"))
        for name in sorted(filenames):
            path = Path(dirpath, name)
            if name.startswith("."):
                refused.append((str(path), "hidden file (its name starts with '.'): not read"))
                continue
            try:
                real = path.resolve(strict=True)
            except RuntimeError:
                refused.append((str(path), "symlink loop"))
                continue
            except OSError as exc:  # a dangling link, a loop (ELOOP)
                refused.append((str(path), "symlink loop" if exc.errno == 40 else f"broken link: {exc.strerror}"))
                continue
            if not real.is_relative_to(top):
                refused.append((str(path), f"symlink to {real}, outside the source folder"))
            elif path.is_symlink():
                refused.append((str(path), f"symlink to {real}: read under its own name"))
            elif real.is_file():
                uris.append(str(real))
            else:
                refused.append((str(path), "not a regular file"))
    return sorted(set(uris)), refused


def _read_uri_list(path: Path, base: str | None = None,
                   allow_outside: bool = False) -> tuple[list[str], list[tuple[str, str]]]:
    """The URIs of a list file and its refused rows; relative ones are joined to ``base``
    (default: the file's folder), and a local entry must stay inside that folder."""
    lines = [line.strip() for line in path.read_text().splitlines()]
    refused = [(line, "list row starting with '#' (a comment): not read") for line in lines if line.startswith("#")]
    lines = [line for line in lines if line and not line.startswith("#")]
    if path.suffix.lower() != ".csv":
        entries = lines
    else:
        rows = [row for row in csv.reader(lines) if row]
        header = [c.strip().lower() for c in rows[0]] if rows else []
        column = header.index("uri") if "uri" in header else 0
        entries = [row[column].strip() for row in rows[1 if "uri" in header else 0:] if len(row) > column]
    folder = path.parent.resolve()
    uris = []
    for uri in entries:
        if not is_gcs(uri) and not base:
            resolved = (folder / uri).resolve()
            if not allow_outside and not resolved.is_relative_to(folder):
                refused.append((uri, f"outside the list's folder {folder} (give --allow-outside to read it)"))
                continue
            uri = str(resolved)
        elif not is_gcs(uri):
            if os.path.isabs(uri) or ".." in Path(uri).parts:
                refused.append((uri, "a local or '..' path in a gs:// list"))
                continue
            uri = join(base, uri)
        uris.append(uri)
    return uris, refused


#: ``version`` of a listing entry that the listing itself refused (``rejected:<reason>``).
REFUSED = "rejected:"


def source_fingerprint(source: str | Path) -> str:
    """A SHA-256 over the sorted ``(uri, size, version)`` of every file of ``source``.

    It changes when a video is added, removed, renamed or rewritten (a new mtime locally, a new
    generation on GCS) and costs one listing, no reads: the pipeline's never-cached first step
    computes it so that ingest, whose cache key includes it, re-runs exactly when the source
    changed. ``""`` (the demo corpus) fingerprints the pinned SHA-256s without fetching anything.
    """
    return entries_fingerprint(source_entries(source))


def entries_fingerprint(entries: list[tuple[str, int, str]]) -> str:
    digest = hashlib.sha256()
    for uri, size, version in sorted(entries):
        digest.update(f"{uri}\t{size}\t{version}\n".encode())
    return digest.hexdigest()


def source_entries(source: str | Path) -> list[tuple[str, int, str]]:
    """``(uri, size, version)`` of every file of ``source`` (see ``source_fingerprint``).

    ``version`` is the mtime in nanoseconds for a local file, ``<generation>:<md5>`` for a GCS
    object, ``missing`` (size -1) for a listed URI that does not exist, ``rejected:<reason>``
    (size -1) for an entry the listing refuses (:func:`scan_source`).
    """
    source = str(source)
    if not source:
        return [(f"demo:{v.name}", -1, v.sha256) for v in DEMO_VIDEOS]
    uris, refused = scan_source(source)
    return ([_local_entry(uri) for uri in uris if not storage.is_gcs(uri)]
            + _gcs_entries([uri for uri in uris if storage.is_gcs(uri)])
            + [(uri, -1, f"{REFUSED}{reason}") for uri, reason in refused])


def _local_entry(uri: str) -> tuple[str, int, str]:
    try:
        stat = os.stat(uri)
    except FileNotFoundError:
        return uri, -1, "missing"
    return uri, stat.st_size, str(stat.st_mtime_ns)


def _gcs_entries(uris: list[str]) -> list[tuple[str, int, str]]:
    """Entries of listed ``gs://`` URIs: one listing per bucket, of their longest common folder."""
    entries = []
    by_bucket: dict[str, list[str]] = {}
    for uri in uris:
        by_bucket.setdefault(storage.split_gcs(uri)[0], []).append(uri)
    for bucket, members in sorted(by_bucket.items()):
        folder = os.path.commonprefix([storage.split_gcs(uri)[1] for uri in members]).rpartition("/")[0]
        listed = _gcs_versions(f"{storage.GCS_PREFIX}{bucket}/{folder}")
        entries += [(uri, *listed.get(uri, (-1, "missing"))) for uri in members]
    return entries


def _gcs_versions(prefix_uri: str) -> dict[str, tuple[int, str]]:
    """``{uri: (size, "<generation>:<md5>")}`` of the objects under a ``gs://`` prefix (one listing)."""
    bucket, key = storage.split_gcs(prefix_uri)
    blobs = storage.list_blobs(bucket, key)
    return {f"{storage.GCS_PREFIX}{bucket}/{b.name}": (int(b.size or 0), f"{b.generation}:{b.md5_hash}")
            for b in blobs if not b.name.endswith("/")}
