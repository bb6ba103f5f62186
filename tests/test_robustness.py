"""Transient storage failures, changed objects, a user's own files: nothing lost, nothing wrong.

A real GCS-compatible server (gcp-storage-emulator) runs as its own process here, so it can be
killed in the middle of a stage and started again on the same data.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import upload_dir
from mmvideos import storage
from mmvideos.clip import ClipConfig, clip_videos
from mmvideos.dataroot import DataRoot
from mmvideos.ingest import ingest, read_videos

MMVIDEOS = [sys.executable, "-m", "mmvideos.cli"]


class Emulator:
    """gcp-storage-emulator in a child process, its objects on disk so a restart keeps them."""

    def __init__(self, data_dir: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.data_dir, self.proc = data_dir, None
        self.host = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        code = ("import sys, time; from gcp_storage_emulator.server import create_server; "
                f"s = create_server('127.0.0.1', {self.port}, in_memory=False, data_dir={str(self.data_dir)!r}); "
                "s.start(); print('up', flush=True); time.sleep(10**6)")
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "up"

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def emulator(tmp_path, monkeypatch):
    server = Emulator(tmp_path / "gcs")
    server.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.host)
    monkeypatch.setenv("MMVIDEOS_STORAGE_DEADLINE_S", "6")
    yield server
    if server.proc.poll() is None:
        server.kill()


def _cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*MMVIDEOS, *args], capture_output=True, text=True, env={**os.environ, **(env or {})},
                          cwd=cwd, timeout=600)


def test_storage_stopped_mid_run_fails_the_stage_and_loses_nothing(emulator, media_dir, tmp_path):
    """Finding 1: files unreadable now are never cached rejects; a dead backend costs minutes."""
    storage.gcs_client().create_bucket("videos")
    upload_dir(media_dir, "gs://videos/raw")
    root, out = tmp_path / "root", tmp_path / "ingest"
    proc = subprocess.Popen([*MMVIDEOS, "ingest", "--source", "gs://videos/raw", "--output", str(out),
                             "--data-root", str(root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (root / "listings").is_dir():  # listed, the probes about to start: storage dies
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    emulator.kill()
    started = time.monotonic()
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode != 0, stderr
    assert time.monotonic() - started < 60  # the deadline (6 s here), not 2 minutes per object
    assert "Traceback" not in stderr
    (line,) = [line for line in stderr.splitlines() if line.startswith("mmvideos ingest: error:")]
    assert "could not be read now" in line and "run again" in line
    assert not (out / "videos.parquet").exists() or len(pd.read_parquet(out / "rejects.parquet")
                                                         .query("reason.str.contains('read')")) == 0
    # nothing about the unread files was committed: storage back, a re-run examines them all
    emulator.start()
    done = _cli("ingest", "--source", "gs://videos/raw", "--output", str(out), "--data-root", str(root))
    assert done.returncode == 0, done.stderr
    videos, rejects = read_videos(out), pd.read_parquet(out / "rejects.parquet")
    assert len(videos) + len(rejects) == len(list(media_dir.iterdir()))
    assert sorted(videos["uri"]) == ["gs://videos/raw/copy_of_tone.mp4", "gs://videos/raw/good_speech.mp4"]
    assert not rejects["reason"].str.contains("read now|cannot be read|not found").any()


def test_dead_bucket_is_a_one_line_error(emulator, tmp_path):
    """Finding 10: a bucket that does not exist names itself, no traceback."""
    done = _cli("ingest", "--source", "gs://no-such-bucket/raw", "--output", str(tmp_path / "o"),
                "--data-root", str(tmp_path / "root"))
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "no bucket gs://no-such-bucket" in done.stderr.strip().splitlines()[-1]


def test_rewritten_object_is_read_at_its_ingested_generation(emulator, media_dir, tmp_path):
    """Finding 4: clip reads the generation ingest probed, or rejects; never new bytes, old id.

    (The emulator serves the live object whatever generation is asked, as a bucket without
    versioning would not: the SHA-256 check against the ingested hash catches it all the same.)
    """
    storage.gcs_client().create_bucket("videos")
    bucket = storage.gcs_client().bucket("videos")
    bucket.blob("raw/a.mp4").upload_from_filename(str(media_dir / "good_tone.mp4"))
    bucket.blob("raw/b.mp4").upload_from_filename(str(media_dir / "good_speech.mp4"))
    root = DataRoot(tmp_path / "root")
    ingest("gs://videos/raw", tmp_path / "i", root, progress=False)
    videos = read_videos(tmp_path / "i")
    assert videos["generation"].notna().all()
    # a.mp4 rewritten with b's bytes, b deleted, between ingest and clip
    bucket.blob("raw/a.mp4").upload_from_filename(str(media_dir / "good_speech.mp4"))
    bucket.blob("raw/b.mp4").delete()
    summary = clip_videos(videos, tmp_path / "c", ClipConfig(), root, progress=False)
    rejects = pd.read_parquet(tmp_path / "c" / "rejects.parquet")
    assert summary["clips"] == 0 and len(rejects) == 2  # neither is clipped under the old id
    assert rejects["reason"].str.contains("gone or changed since ingest").all()
    # ingest again: the new content gets its own id (that of good_speech), once
    ingest("gs://videos/raw", tmp_path / "i2", root, progress=False)
    again = read_videos(tmp_path / "i2")
    assert again["uri"].tolist() == ["gs://videos/raw/a.mp4"]
    assert again["video_id"].tolist() == videos.loc[videos["uri"].str.endswith("b.mp4"), "video_id"].tolist()
