"""Ingest on real media: every input is kept or rejected with a reason, ids are stable."""

from __future__ import annotations

import os
import shutil

import pandas as pd
import pytest

from conftest import upload_dir
from mmvideos import storage
from mmvideos.corpus import sha256_file
from mmvideos.ingest import (IngestConfig, fold_of, ingest, link_or_copy, read_videos, source_entries,
                             source_fingerprint, split_of, video_id_for)


@pytest.fixture(scope="module")
def ingested(media_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ingest")
    summary = ingest(media_dir, out, progress=False)
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
    ingest(moved, tmp_path / "again", progress=False)
    again = pd.read_parquet(tmp_path / "again" / "videos.parquet")
    original = videos[videos["uri"].str.endswith("good_speech.mp4")]
    assert again["video_id"].tolist() == original["video_id"].tolist()
    assert again["fold"].tolist() == original["fold"].tolist()


def test_rerun_is_idempotent(media_dir, ingested, tmp_path):
    _, videos, rejects = ingested
    ingest(media_dir, tmp_path, progress=False)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "videos.parquet"), videos)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "rejects.parquet"), rejects)


def test_folds_and_splits_follow_the_paper():
    ids = [video_id_for(f"{i:064x}") for i in range(3000)]
    folds = [fold_of(v, 4096) for v in ids]
    assert all(0 <= f < 4096 for f in folds) and len(set(folds)) > 2000
    val = sum(split_of(f, 15) == "val" for f in folds) / len(folds)
    assert 0.04 < val < 0.10  # one part in 15


def test_uri_list_source(media_dir, tmp_path):
    listing = tmp_path / "videos.csv"
    listing.write_text(f"uri,comment\n{media_dir / 'good_speech.mp4'},ok\n{tmp_path / 'missing.mp4'},gone\n")
    summary = ingest(listing, tmp_path / "out", IngestConfig(), progress=False)
    rejects = pd.read_parquet(tmp_path / "out" / "rejects.parquet")
    assert summary["videos_kept"] == 1
    assert rejects["reason"].tolist() == ["file not found"]


def test_a_text_list_takes_each_line_whole(media_dir, tmp_path):
    folder = tmp_path / "list dir"
    folder.mkdir()
    shutil.copy(media_dir / "good_speech.mp4", folder / "clip, take 1.mp4")
    (folder / "videos.txt").write_text("# one URI per line\nclip, take 1.mp4\n")
    assert storage.list_source(folder / "videos.txt") == [str((folder / "clip, take 1.mp4").resolve())]


def test_copy_media_places_each_kept_local_video_in_the_output(media_dir, ingested, tmp_path):
    _, plain, _ = ingested
    assert plain["media"].isna().all()  # off by default: the CLI/DVC path reads the source itself
    out = tmp_path / "out"
    ingest(media_dir, out, progress=False, copy_media=True)
    table = pd.read_parquet(out / "videos.parquet")
    assert table["media"].tolist() == [f"media/{v}.mp4" for v in table["video_id"]]
    assert sorted(p.name for p in (out / "media").iterdir()) == sorted(f"{v}.mp4" for v in table["video_id"])
    for row in table.itertuples():
        assert sha256_file(out / row.media) == row.sha256
    resolved = read_videos(out)
    assert resolved["media"].tolist() == [str(out / m) for m in table["media"]]
    # a re-run into the same folder that keeps fewer videos leaves no stale copy behind
    listing = tmp_path / "one.txt"
    listing.write_text(f"{media_dir / 'good_speech.mp4'}\n")
    ingest(listing, out, progress=False, copy_media=True)
    assert len(list((out / "media").iterdir())) == 1


def test_gcs_videos_are_not_copied(media_dir, gcs_bucket, tmp_path):
    upload_dir(media_dir, f"{gcs_bucket('ingest-media')}/raw")
    ingest("gs://ingest-media/raw", tmp_path, progress=False, copy_media=True)
    videos = read_videos(tmp_path)
    assert len(videos) == 2 and videos["uri"].str.startswith("gs://").all()
    assert videos["media"].isna().all() and not (tmp_path / "media").exists()


def test_link_or_copy_links_on_one_file_system(tmp_path):
    source = tmp_path / "a.mp4"
    source.write_bytes(b"video bytes")
    link_or_copy(source, tmp_path / "media" / "b.mp4")
    assert (tmp_path / "media" / "b.mp4").read_bytes() == b"video bytes"
    assert os.path.samefile(source, tmp_path / "media" / "b.mp4")
    assert [p.name for p in (tmp_path / "media").iterdir()] == ["b.mp4"]  # no temporary left


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
