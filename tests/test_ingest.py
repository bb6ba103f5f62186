"""Ingest on real media: every input is kept or rejected with a reason, ids are stable."""

from __future__ import annotations

import os
import shutil

import pandas as pd
import pytest

from conftest import upload_dir
from mmvideos.data import storage
from mmvideos.data.dataroot import DataRoot
from mmvideos.data.sources import scan_source, source_entries, source_fingerprint
from mmvideos.stages.ingest import IngestConfig, fold_of, ingest, read_videos, split_of, video_id_for


@pytest.fixture(scope="module")
def ingested(media_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ingest")
    summary = ingest(media_dir, out, DataRoot(out / "data"), progress=False)
    return summary, pd.read_parquet(out / "videos.parquet"), pd.read_parquet(out / "rejects.parquet")


def test_every_input_is_accounted_for(media_dir, ingested):
    summary, videos, rejects = ingested
    inputs = {str(p) for p in media_dir.iterdir()}
    assert set(videos["uri"]) | set(rejects["uri"]) == inputs
    assert not set(videos["uri"]) & set(rejects["uri"])
    assert summary["inputs"] == len(inputs) == summary["videos_kept"] + summary["videos_rejected"]


def test_kept_videos_have_both_streams(ingested):
    _, videos, _ = ingested
    names = sorted(uri.rsplit("/", 1)[1] for uri in videos["uri"])
    assert names in (["copy_of_tone.mp4", "good_speech.mp4"], ["good_speech.mp4", "good_tone.mp4"])
    assert videos["sample_rate"].notna().all() and videos["width"].eq(320).all()
    assert videos["duration_s"].between(3.9, 7.1).all()


def test_reasons_are_plain_words(ingested):
    _, _, rejects = ingested
    reason = {uri.rsplit("/", 1)[1]: r for uri, r in zip(rejects["uri"], rejects["reason"])}
    assert reason["picture_only.mp4"].startswith("no audio stream")
    assert reason["sound_only.mp4"].startswith("no video stream")
    assert reason["too_short.mp4"].startswith("too short: 2.0")
    assert reason["corrupt.mp4"].startswith("not a readable media file")
    assert reason["empty.mp4"] == "empty file"
    duplicate = [r for r in rejects["reason"] if r.startswith("duplicate of")]
    assert len(duplicate) == 1 and "tone.mp4" in duplicate[0]


def test_ids_are_content_derived_and_stable(media_dir, ingested, tmp_path):
    _, videos, _ = ingested
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.copy(media_dir / "good_speech.mp4", moved / "renamed.mp4")
    ingest(moved, tmp_path / "again", DataRoot(tmp_path / "data"), progress=False)
    again = pd.read_parquet(tmp_path / "again" / "videos.parquet")
    original = videos[videos["uri"].str.endswith("good_speech.mp4")]
    assert again["video_id"].tolist() == original["video_id"].tolist()
    assert again["fold"].tolist() == original["fold"].tolist()


def test_rerun_is_idempotent(media_dir, ingested, tmp_path):
    _, videos, rejects = ingested
    ingest(media_dir, tmp_path, DataRoot(tmp_path / "data"), progress=False)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "videos.parquet"), videos)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "rejects.parquet"), rejects)


def test_folds_and_splits_follow_the_paper():
    ids = [video_id_for(f"{i:064x}") for i in range(3000)]
    folds = [fold_of(v, 4096) for v in ids]
    assert all(0 <= f < 4096 for f in folds) and len(set(folds)) > 2000
    val = sum(split_of(f, 15) == "val" for f in folds) / len(folds)
    assert 0.04 < val < 0.10  # one part in 15


def test_uri_list_source(media_dir, tmp_path, monkeypatch):
    listing = tmp_path / "videos.csv"
    listing.write_text(f"uri,comment\n{media_dir / 'good_speech.mp4'},ok\n{tmp_path / 'missing.mp4'},gone\n")
    summary = ingest(listing, tmp_path / "out", DataRoot(tmp_path / "data"), IngestConfig(), progress=False)
    rejects = pd.read_parquet(tmp_path / "out" / "rejects.parquet")
    assert summary["videos_kept"] == 0  # the video lies outside the list's folder: refused, with the reason
    assert rejects["reason"].str.startswith("outside the list's folder").sum() == 1
    assert "file not found" in rejects["reason"].tolist()
    monkeypatch.setenv("MMVIDEOS_ALLOW_OUTSIDE", "1")  # what --allow-outside sets
    summary = ingest(listing, tmp_path / "out", DataRoot(tmp_path / "data"), IngestConfig(), progress=False)
    rejects = pd.read_parquet(tmp_path / "out" / "rejects.parquet")
    assert summary["videos_kept"] == 1
    assert rejects["reason"].tolist() == ["file not found"]


def test_a_text_list_takes_each_line_whole(media_dir, tmp_path):
    folder = tmp_path / "list dir"
    folder.mkdir()
    shutil.copy(media_dir / "good_speech.mp4", folder / "clip, take 1.mp4")
    (folder / "videos.txt").write_text("# one URI per line\nclip, take 1.mp4\n")
    assert scan_source(folder / "videos.txt") == (
        [str((folder / "clip, take 1.mp4").resolve())],
        [("# one URI per line", "list row starting with '#' (a comment): not read")])


def test_a_second_ingest_reads_only_new_or_changed_files(media_dir, tmp_path):
    source = tmp_path / "videos"
    shutil.copytree(media_dir, source)
    data = DataRoot(tmp_path / "data")
    first = ingest(source, tmp_path / "first", data, progress=False)
    assert first["shards_computed"] == 8 and first["shards_reused"] == 0
    shutil.copy(media_dir / "good_speech.mp4", source / "added.mp4")
    os.utime(source / "good_tone.mp4", ns=(0, 0))  # touched: its entry changes, so it is probed again
    second = ingest(source, tmp_path / "second", data, progress=False)
    assert (second["shards_computed"], second["shards_reused"]) == (2, 7)
    rejects = pd.read_parquet(tmp_path / "second" / "rejects.parquet")
    assert rejects["reason"].str.contains("duplicate of .*added.mp4").sum() == 1


def test_gcs_videos_are_read_where_they_are(media_dir, gcs_bucket, tmp_path):
    upload_dir(media_dir, f"{gcs_bucket('ingest-media')}/raw")
    ingest("gs://ingest-media/raw", tmp_path, DataRoot(f"{gcs_bucket('ingest-media')}/root"), progress=False)
    videos = read_videos(tmp_path)
    assert len(videos) == 2 and videos["uri"].str.startswith("gs://").all()


def test_fingerprint_follows_the_listing_not_the_bytes(media_dir, tmp_path):
    source = tmp_path / "videos"
    shutil.copytree(media_dir, source)
    first = source_fingerprint(source)
    assert source_fingerprint(source) == first and len(first) == 64
    shutil.copy(source / "good_tone.mp4", source / "added.mp4")
    added = source_fingerprint(source)
    assert added != first
    os.utime(source / "added.mp4", ns=(0, 0))  # rewritten in place: a new mtime
    assert source_fingerprint(source) not in (first, added)
    listing = tmp_path / "list.txt"
    listing.write_text(f"{source / 'good_speech.mp4'}\n{tmp_path / 'missing.mp4'}\n")
    entries = source_entries(listing)
    assert [e[1:] for e in entries if e[0].endswith("missing.mp4")] == [(-1, "missing")]
    # the demo corpus is fingerprinted from its pinned hashes, without fetching it
    assert source_fingerprint("") == source_fingerprint("") != first


def test_fingerprint_of_gcs_sees_a_rewritten_object(media_dir, gcs_bucket):
    bucket = gcs_bucket("fingerprint")
    upload_dir(media_dir, f"{bucket}/raw")
    first = source_fingerprint(f"{bucket}/raw")
    listing = source_entries(f"{bucket}/raw")
    assert sorted(uri.rsplit("/", 1)[1] for uri, _, _ in listing) == sorted(p.name for p in media_dir.iterdir())
    rewritten = (media_dir / "corrupt.mp4").read_bytes()[::-1]  # same size, other bytes
    storage.gcs_client().bucket("fingerprint").blob("raw/corrupt.mp4").upload_from_string(rewritten)
    assert source_fingerprint(f"{bucket}/raw") != first
