"""Ingest on real media: every input is kept or rejected with a reason, ids are stable."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from mmvideos.ingest import IngestConfig, fold_of, ingest, split_of, video_id_for


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
