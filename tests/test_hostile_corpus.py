"""A hostile source folder: every input lands exactly once in the kept or rejected tables,
each with a specific reason (issue findings 6, 8 and 12)."""

from __future__ import annotations

import ast
import fractions
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest

from mmvideos.data import sources
from mmvideos.data.dataroot import DataRoot
from mmvideos.demo.synth_media import tone, write_media
from mmvideos.stages.clip import ClipConfig, clip_videos, read_clips
from mmvideos.stages.ingest import IngestConfig, ingest, read_videos


def cover_art(path: Path, seconds: float = 5.0) -> None:
    """An audio file with a still cover image (an attached picture), as music files carry."""
    with av.open(str(path), "w") as out:
        audio = out.add_stream("aac", rate=44100)
        audio.layout = "mono"
        cover = out.add_stream("mjpeg")
        cover.width, cover.height, cover.pix_fmt = 64, 64, "yuvj420p"
        cover.disposition = av.stream.Disposition.attached_pic
        image = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 128, np.uint8), format="rgb24").reformat(
            format="yuvj420p")
        image.pts, image.time_base = 0, fractions.Fraction(1, 25)
        for packet in [*cover.encode(image), *cover.encode()]:
            out.mux(packet)
        frame = av.AudioFrame.from_ndarray((tone(seconds) * 32767).astype(np.int16)[None, :], format="s16",
                                           layout="mono")
        frame.sample_rate, frame.pts = 44100, 0
        for packet in [*audio.encode(frame), *audio.encode()]:
            out.mux(packet)


def lying_duration(path: Path, seconds: float) -> None:
    """A 4-s Matroska file whose Segment Duration header claims ``seconds``."""
    write_media(path, 4.0, audio=tone(4.0))
    data = bytearray(path.read_bytes())
    at = data.find(b"\x44\x89")  # EBML id of Duration, an 8-byte float in milliseconds
    assert data[at + 2] == 0x88
    data[at + 3:at + 11] = struct.pack(">d", seconds * 1000)
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def hostile(media_dir, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """The folder and ``{input path: the reason it must get ("" = kept)}``."""
    root = tmp_path_factory.mktemp("hostile").resolve()
    src = root / "source"
    (src / "sub").mkdir(parents=True)
    expected = {}
    for name, reason in [("good_tone.mp4", "duplicate of"), ("good_speech.mp4", ""), ("copy_of_tone.mp4", ""),
                         ("picture_only.mp4", "no audio stream"), ("sound_only.mp4", "no video stream"),
                         ("corrupt.mp4", "not a readable media file"), ("empty.mp4", "empty file"),
                         ("too_short.mp4", "too short for a clip")]:
        shutil.copy(media_dir / name, src / "sub" / name if name == "good_speech.mp4" else src / name)
        expected[str(src / "sub" / name if name == "good_speech.mp4" else src / name)] = reason
    cover_art(src / "song.mp4")
    expected[str(src / "song.mp4")] = "cover image"
    lying_duration(src / "huge.mkv", 1e9)
    expected[str(src / "huge.mkv")] = "header declares 1000000000 s"
    lying_duration(src / "hour.mkv", 3600)
    expected[str(src / "hour.mkv")] = "header declares 3600 s"
    (src / "notes.txt").write_text("not a video\n")
    expected[str(src / "notes.txt")] = "not a readable media file"
    os.symlink("loop.mp4", src / "loop.mp4")
    expected[str(src / "loop.mp4")] = "symlink loop"
    os.symlink("..", src / "sub" / "up")
    expected[str(src / "sub" / "up")] = "symlink loop"
    (root / "secret.mp4").write_bytes((media_dir / "good_tone.mp4").read_bytes()[:1000])
    os.symlink(root / "secret.mp4", src / "escape.mp4")
    expected[str(src / "escape.mp4")] = "outside the source folder"
    os.symlink(src / "sub" / "good_speech.mp4", src / "alias.mp4")
    expected[str(src / "alias.mp4")] = "read under its own name"
    (src / ".DS_Store").write_bytes(b"\0" * 10)
    expected[str(src / ".DS_Store")] = "hidden file"
    (src / ".git").mkdir()
    (src / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    expected[str(src / ".git")] = "hidden folder"
    return src, expected


def test_every_input_is_counted_once_with_its_reason(hostile, tmp_path):
    src, expected = hostile
    data = DataRoot(tmp_path / "data")
    # min_duration_s below clip.min_s (params.yaml refuses that, test_settings): clip must say why
    ingest(src, tmp_path / "ingest", data, IngestConfig(min_duration_s=2.0), progress=False)
    clip_videos(read_videos(tmp_path / "ingest"), tmp_path / "clips", ClipConfig(), data, progress=False)
    videos = read_videos(tmp_path / "ingest")
    clipped = set(videos.loc[videos["video_id"].isin(read_clips(tmp_path / "clips")["video_id"]), "uri"])
    rejects = pd.concat([pd.read_parquet(tmp_path / "ingest" / "rejects.parquet"),
                         pd.read_parquet(tmp_path / "clips" / "rejects.parquet")], ignore_index=True)
    seen = sorted([*clipped, *rejects["uri"]])
    assert seen == sorted(expected)  # each input exactly once
    reasons = dict(zip(rejects["uri"], rejects["reason"]))
    for uri, reason in expected.items():
        if reason:
            assert reason in reasons[uri], (uri, reasons[uri])
        else:
            assert uri in clipped


def test_uri_list_rows_are_each_accounted_for(hostile, tmp_path):
    src, _ = hostile
    listing = src / "sub" / "videos.txt"
    listing.write_text("# a comment row\ngood_speech.mp4\n../good_tone.mp4\n/etc/passwd\nmissing.mp4\n")
    try:
        ingest(listing, tmp_path / "out", DataRoot(tmp_path / "data"), progress=False)
    finally:
        listing.unlink()
    kept = read_videos(tmp_path / "out")["uri"].tolist()
    rejects = pd.read_parquet(tmp_path / "out" / "rejects.parquet")
    reasons = dict(zip(rejects["uri"], rejects["reason"]))
    assert kept == [str(src / "sub" / "good_speech.mp4")]
    assert len(rejects) == 4
    assert reasons["# a comment row"].startswith("list row starting with '#'")
    assert reasons["../good_tone.mp4"].startswith("outside the list's folder")
    assert reasons["/etc/passwd"].startswith("outside the list's folder")  # never read, never copied
    assert reasons[str(src / "sub" / "missing.mp4")] == "file not found"


@pytest.mark.skipif(not shutil.which("setpriv") or os.geteuid() != 0, reason="needs root to drop its capabilities")
def test_an_unreadable_folder_gets_a_reject_row():
    """Permissions do not bind root through its capabilities, so the listing runs as root without
    them (setpriv drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH) on a real folder."""
    without_override = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", sys.executable, "-c"]
    folder = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        folder.chmod(0o755)
        (folder / "open").mkdir()
        (folder / "locked").mkdir()
        (folder / "open" / "a.mp4").write_bytes(b"x")
        (folder / "locked" / "b.mp4").write_bytes(b"x")
        (folder / "locked").chmod(0)
        code = f"from mmvideos.data.sources import scan_source; print(scan_source({str(folder)!r}))"
        out = subprocess.run([*without_override, code], capture_output=True, text=True, check=True).stdout
        assert ast.literal_eval(out) == ([str(folder / "open" / "a.mp4")],
                             [(str(folder / "locked"), "unreadable folder: Permission denied")])
    finally:
        (folder / "locked").chmod(0o755)
        shutil.rmtree(folder)


def test_an_empty_or_mistyped_source_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="lists no files"):
        sources.scan_source(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="neither a folder"):
        sources.scan_source(tmp_path / "typo")
