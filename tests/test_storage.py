"""gs:// sources and shards against a real GCS-compatible server (gcp-storage-emulator)."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import upload_dir
from mmvideos.data import sources, storage
from mmvideos.data.dataroot import DataRoot
from mmvideos.stages.clip import ClipConfig, clip_videos, iter_clip_audio, iter_clip_frames
from mmvideos.stages.ingest import ingest


@pytest.fixture(scope="module")
def gcs(media_dir, gcs_bucket):
    """The media folder under gs://videos/raw/ on the emulator."""
    upload_dir(media_dir, f"{gcs_bucket('videos')}/raw")
    return "gs://videos/raw"


def test_gcs_prefix_is_listed(gcs, media_dir):
    # neighbours of the prefix: a folder and a file whose names start like it
    bucket = storage.gcs_client().bucket("videos")
    bucket.blob("raw_old/c.mp4").upload_from_string(b"x")
    bucket.blob("raw.csv").upload_from_string("uri\nraw/good_speech.mp4\n")
    uris = sources.source_uris(gcs)
    assert sorted(uris) == sorted(f"{gcs}/{p.name}" for p in media_dir.iterdir())
    # a URI list stored on GCS, its entries relative to its folder
    assert sources.source_uris("gs://videos/raw.csv") == ["gs://videos/raw/good_speech.mp4"]
    assert sources.source_uris(f"{gcs}/good_speech.mp4") == [f"{gcs}/good_speech.mp4"]  # one object


def test_ingest_and_clip_from_gcs_match_local(gcs, media_dir, tmp_path):
    ingest(gcs, tmp_path / "remote", DataRoot("gs://videos/root"), progress=False)
    ingest(media_dir, tmp_path / "local", DataRoot(tmp_path / "data"), progress=False)
    remote = pd.read_parquet(tmp_path / "remote" / "videos.parquet")
    local = pd.read_parquet(tmp_path / "local" / "videos.parquet")
    assert remote["uri"].str.startswith("gs://videos/raw/").all()
    assert remote["video_id"].tolist() == local["video_id"].tolist()  # ids come from content
    rejects = pd.read_parquet(tmp_path / "remote" / "rejects.parquet")
    assert len(remote) + len(rejects) == len(list(media_dir.iterdir()))
    summary = clip_videos(remote, tmp_path / "clips", ClipConfig(), DataRoot("gs://videos/root"), progress=False)
    assert summary["clips"] == 3


def test_shards_stream_from_gcs(gcs, media_dir, tmp_path):
    ingest(media_dir, tmp_path / "i", DataRoot(tmp_path / "data"), progress=False)
    videos = pd.read_parquet(tmp_path / "i" / "videos.parquet")
    clip_videos(videos, tmp_path / "local", ClipConfig(), DataRoot(tmp_path / "data"), progress=False)
    clip_videos(videos, tmp_path / "remote", ClipConfig(), DataRoot("gs://videos/shards"), progress=False)
    local_ids = [cid for cid, _, _ in iter_clip_audio(tmp_path / "local", DataRoot(tmp_path / "data"))]
    assert len(local_ids) == 3
    assert [cid for cid, _, _ in iter_clip_audio(tmp_path / "remote", DataRoot("gs://videos/shards"))] == local_ids
    assert [cid for cid, _ in iter_clip_frames(tmp_path / "remote", DataRoot("gs://videos/shards"))] == local_ids


def test_missing_gcs_object_is_a_reject_not_a_crash(gcs, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text(f"{gcs}/good_speech.mp4\n{gcs}/no_such_file.mp4\n")
    summary = ingest(listing, tmp_path / "o", DataRoot(tmp_path / "data"), progress=False)
    rejects = pd.read_parquet(tmp_path / "o" / "rejects.parquet")
    assert summary["videos_kept"] == 1
    assert rejects["reason"].tolist() == ["file not found"]
