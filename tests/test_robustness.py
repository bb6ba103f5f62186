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
from mmvideos.data import storage
from mmvideos.data.dataroot import DataRoot
from mmvideos.stages.clip import ClipConfig, clip_videos
from mmvideos.stages.ingest import ingest, read_videos

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
    storage.gcs_client().create_bucket("videos")
    storage.gcs_client().bucket("videos").blob("raw/a.mp4").upload_from_string(b"x")
    typo = _cli("ingest", "--source", "gs://videos/rwa", "--output", str(tmp_path / "o"),
                "--data-root", str(tmp_path / "root"))
    assert typo.returncode != 0 and "Traceback" not in typo.stderr
    assert "lists no files" in typo.stderr.strip().splitlines()[-1]


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


# --- Integrity of training inputs and outputs (finding 5) and resume settings (finding 7) -------

import io  # noqa: E402
import json  # noqa: E402
import tarfile  # noqa: E402

import numpy as np  # noqa: E402

from mmvideos.data.files import sha256_file  # noqa: E402
from mmvideos.stages.pretrain import PretrainConfig, load_model, pretrain  # noqa: E402
from mmvideos.training.synthetic import write_synthetic_features  # noqa: E402


def _config(**changes) -> PretrainConfig:
    settings = dict(model="vggish_fc", width_mult=0.0625, epochs=1, batch_size=16, lr=3e-3, shuffle_buffer=32,
                    num_workers=0, device="cpu", val_clips=0)
    return PretrainConfig(**(settings | changes))


@pytest.fixture
def features(tmp_path):
    return write_synthetic_features(tmp_path / "features", num_clips=64, val_clips=16, num_shards=2)


def _shard(features: Path) -> Path:
    return Path(pd.read_parquet(features / "manifest.parquet")["uri"].iloc[0])


def _rewrite_shard(features: Path, change) -> None:
    """Rewrite the first shard's members through ``change(name, bytes) -> bytes | None`` and
    record the new SHA-256 in the manifest, as if the stage itself had written it so."""
    shard = _shard(features)
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers() if m.isfile()]
    with tarfile.open(shard, "w") as tar:
        for member, data in members:
            data = change(member.name, data)
            if data is not None:
                member.size = len(data)
                tar.addfile(member, io.BytesIO(data))
    manifest = pd.read_parquet(features / "manifest.parquet")
    manifest.loc[manifest["uri"] == str(shard), "sha256"] = sha256_file(shard)
    manifest.to_parquet(features / "manifest.parquet", index=False)


def test_a_non_finite_loss_stops_training_with_an_error(features, tmp_path, one_torch_thread):
    def poison(name: str, data: bytes) -> bytes:
        mel = np.load(io.BytesIO(data))
        buf = io.BytesIO()
        np.save(buf, np.full_like(mel, np.nan))
        return buf.getvalue()

    _rewrite_shard(features, poison)
    with pytest.raises(FloatingPointError, match="non-finite"):
        pretrain(features, tmp_path / "out", _config(), progress=False)
    assert not (tmp_path / "out" / "model.safetensors").exists()  # no NaN model is exported


@pytest.mark.parametrize("damage", ["flip", "truncate", "fewer_clips"])
def test_a_damaged_shard_is_an_error_naming_it(features, tmp_path, damage):
    shard = _shard(features)
    data = bytearray(shard.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x40
    elif damage == "truncate":
        data = data[: len(data) // 2]
    else:  # a valid tar with a clip less than the index names
        with tarfile.open(shard) as tar:
            first = tar.getmembers()[0]
            members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()[1:]]
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for member, payload in members:
                tar.addfile(member, io.BytesIO(payload))
        data = bytearray(buf.getvalue())
        assert first.name not in {m.name for m, _ in members}
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"shard {shard} is corrupt"):
        pretrain(features, tmp_path / "out", _config(), progress=False)


def test_an_index_naming_a_shard_the_manifest_lacks_is_an_error(features, tmp_path):
    index = pd.read_parquet(features / "index.parquet")
    index.loc[0, "shard"] = str(features / "shards" / "elsewhere.tar")
    index.to_parquet(features / "index.parquet", index=False)
    with pytest.raises(ValueError, match="elsewhere.tar"):
        pretrain(features, tmp_path / "out", _config(), progress=False)


def test_flipped_weights_and_checkpoints_are_refused(features, tmp_path, one_torch_thread):
    out = tmp_path / "out"
    pretrain(features, out, _config(), progress=False)
    load_model(out)  # intact: loads
    for name in ("model.safetensors", "checkpoint.pt"):
        path = out / name
        data = bytearray(path.read_bytes())
        data[len(data) - 100] ^= 0x01
        path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="model.safetensors is corrupt"):
        load_model(out)
    with pytest.raises(ValueError, match="checkpoint.pt is corrupt"):
        pretrain(features, out, _config(epochs=2), progress=False)


def test_resume_refuses_changed_settings_unless_forced(features, tmp_path, one_torch_thread):
    out = tmp_path / "out"
    pretrain(features, out, _config(), progress=False)
    with pytest.raises(ValueError, match=r"lr 0.003 -> 0.001.*--force"):
        pretrain(features, out, _config(epochs=2, lr=1e-3), progress=False)
    pretrain(features, out, _config(epochs=2), progress=False)  # more epochs only: resumes
    summary = pretrain(features, out, _config(epochs=3, lr=1e-3), progress=False, force=True)
    history = json.loads((out / "metrics.json").read_text())
    assert summary["final"]["epoch"] == 3 and history[-1]["lr"] == pytest.approx(1e-3 * 0.9 ** 2)


def test_a_stage_leaves_the_users_own_files_in_its_output_folder(media_dir, tmp_path):
    """Finding 2: shards go to the data root under keys the stage made; files already in the
    output folder (the user's) are never deleted or overwritten."""
    out = tmp_path / "D"
    mine = [out / "audio" / "mine.tar", out / "frames" / "mine.tar", out / "shards" / "mine.tar", out / "notes.txt"]
    for path in mine:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"the user's own bytes")
    root = DataRoot(tmp_path / "root")
    ingest(media_dir, out, root, progress=False)
    clip_videos(read_videos(out), out, ClipConfig(), root, progress=False)
    assert all(path.read_bytes() == b"the user's own bytes" for path in mine)


def _write_tone(path: Path, hz: float) -> None:
    from mmvideos.data.shards import wav_bytes
    from mmvideos.demo.synth_media import tone

    path.write_bytes(wav_bytes((tone(2.0, 16000, hz) * 20000).astype(np.int16), 16000))


def _two_tones_and_a_counting_extractor(folder: Path):
    """``a.wav`` (440 Hz) and ``b.wav`` (880 Hz) as a benchmark table, the log-mel statistics
    extractor, and the list its every computation appends to."""
    from mmvideos.benchmarks.embeddings import LOGMEL_STATS, Extractor

    _write_tone(folder / "a.wav", 440.0)
    _write_tone(folder / "b.wav", 880.0)
    table = pd.DataFrame({"clip_id": ["a", "b"], "uri": [str(folder / "a.wav"), str(folder / "b.wav")]})
    calls = []

    def counting(frames):
        calls.append(1)
        return LOGMEL_STATS.fn(frames)

    return table, Extractor("logmel_stats", LOGMEL_STATS.key, counting), calls


def test_transfer_cache_sees_audio_changed_at_the_same_path(tmp_path):
    """Finding 3: the embedding cache is keyed by each file's version, not by its path."""
    from mmvideos.benchmarks.embeddings import extract

    table, stats, calls = _two_tones_and_a_counting_extractor(tmp_path)
    first = extract(table, [stats], tmp_path / "cache", "demo", str(tmp_path), progress=False)["logmel_stats"]
    assert len(calls) == 2
    extract(table, [stats], tmp_path / "cache", "demo", str(tmp_path), progress=False)
    assert len(calls) == 2  # unchanged: all from the cache
    _write_tone(tmp_path / "a.wav", 3000.0)  # the benchmark's audio changes at the same path
    os.utime(tmp_path / "a.wav", ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    again = extract(table, [stats], tmp_path / "cache", "demo", str(tmp_path), progress=False)["logmel_stats"]
    assert len(calls) == 3  # only the changed clip is decoded again
    assert not np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])


def test_a_truncated_shard_names_itself(tmp_path):
    """Finding 10: not a bare tarfile.ReadError."""
    from mmvideos.data.shards import ShardWriter, iter_shard

    with ShardWriter(tmp_path / "s.tar") as writer:
        for i in range(5):
            writer.write(f"clip{i}", {"npy": bytes(5000)})
    data = (tmp_path / "s.tar").read_bytes()
    (tmp_path / "s.tar").write_bytes(data[:7000])
    with pytest.raises(ValueError, match=f"shard {tmp_path / 's.tar'} is damaged"):
        list(iter_shard(tmp_path / "s.tar"))


def test_a_flipped_clip_shard_is_caught_on_read(media_dir, tmp_path):
    """Finding 5: shards are verified against their manifest's SHA-256 as they stream."""
    from mmvideos.stages.clip import iter_clip_audio

    root = DataRoot(tmp_path / "root")
    ingest(media_dir, tmp_path / "i", root, progress=False)
    clip_videos(read_videos(tmp_path / "i"), tmp_path / "c", ClipConfig(), root, progress=False)
    assert len(list(iter_clip_audio(tmp_path / "c", root))) == 3
    manifest = pd.read_parquet(tmp_path / "c" / "manifest.parquet")
    shard = Path(root.resolve(manifest.loc[manifest["file"] == "audio.tar", "uri"].iloc[0]))
    data = bytearray(shard.read_bytes())
    data[2000] ^= 0x01  # inside the first WAV's samples: the tar still parses
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"shard {shard} is corrupt"):
        list(iter_clip_audio(tmp_path / "c", root))


def test_a_flipped_byte_in_a_cached_embedding_is_recomputed(tmp_path):
    """Before: a cached benchmark vector was read as found, so a flipped float changed the transfer result."""
    from mmvideos.benchmarks.embeddings import extract

    table, stats, calls = _two_tones_and_a_counting_extractor(tmp_path)
    first = extract(table, [stats], tmp_path / "cache", "demo", str(tmp_path), progress=False)["logmel_stats"]
    cached = sorted((tmp_path / "cache").rglob("a-*.npy"))[0]
    data = bytearray(cached.read_bytes())
    data[-3] ^= 0x40  # the exponent of the last float
    cached.write_bytes(bytes(data))
    again = extract(table, [stats], tmp_path / "cache", "demo", str(tmp_path), progress=False)["logmel_stats"]
    assert len(calls) == 3  # the changed clip only, computed again
    np.testing.assert_array_equal(again, first)
