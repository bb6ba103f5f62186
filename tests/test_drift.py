"""label_drift: evidently drift reports over merge_labels tables generated here."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mmvideos.config import from_dict
from mmvideos.data.atomic import write_parquet
from mmvideos.stages.annotate import MERGED_COLUMNS
from mmvideos.stages.drift import (
    HEADLINE,
    NO_AUDIO,
    NUMERIC_COLUMNS,
    RARE_AUDIO,
    DriftConfig,
    label_drift,
    label_frame,
    pool_rare_categories,
)

VISUAL = {f"visual:n{i:08d}": name for i, name in enumerate(
    ["tabby", "beagle", "crane", "crane", "kite", "llama", "hare", "pinwheel", "sea lion", "web site"])}
AUDIO = {"audio:/m/09x0r": "Speech", "audio:/m/04rlf": "Music", "audio:/m/028v0c": "Silence",
         "audio:/m/0jbk": "Animal", "audio:/m/02_41": "Fire"}
SPEECH, MUSIC = "audio:/m/09x0r", "audio:/m/04rlf"


def _vocabulary() -> pd.DataFrame:
    ids = [*VISUAL, *AUDIO]
    return pd.DataFrame({"index": np.arange(len(ids)), "id": ids, "name": [*VISUAL.values(), *AUDIO.values()],
                         "modality": [i.partition(":")[0] for i in ids], "count": 1})


def _labels(n: int, speech: float, seed: int, split: str = "train", prefix: str = "c") -> pd.DataFrame:
    """``n`` clips like merge_labels writes: 3 visual labels; Speech (with prob. ``speech``) or Music
    on top, sometimes a second audio label; scores best first."""
    rng = np.random.default_rng(seed)
    visual_ids, others = list(VISUAL), [i for i in AUDIO if i not in (SPEECH, MUSIC)]
    rows = []
    for k in range(n):
        visual = [visual_ids[i] for i in rng.choice(len(visual_ids), 3, replace=False)]
        audio = [SPEECH if rng.random() < speech else MUSIC]
        if rng.random() < 0.4:
            audio.append(others[rng.integers(len(others))])
        rows.append({"clip_id": f"{prefix}{k:04d}", "video_id": f"{prefix}v{k // 4}", "fold": k, "split": split,
                     "visual_labels": visual, "visual_scores": sorted(rng.uniform(0.05, 0.6, 3), reverse=True),
                     "audio_labels": audio, "audio_scores": sorted(rng.uniform(0.1, 0.95, len(audio)), reverse=True),
                     "label_ids": visual + audio})
    return pd.DataFrame(rows, columns=MERGED_COLUMNS)


def _run(folder, labels: pd.DataFrame, vocabulary: bool = True):
    write_parquet(labels, folder / "labels.parquet")
    if vocabulary:
        write_parquet(_vocabulary(), folder / "vocabulary.parquet")
    return folder


def _files(out_dir) -> dict:
    return {p.name: p for p in out_dir.iterdir()}


def test_config_defaults_and_validation():
    assert DriftConfig() == from_dict(DriftConfig, {})
    assert from_dict(DriftConfig, {"top_labels": 5.0, "drift_share": 0.3}).top_labels == 5
    with pytest.raises(ValueError):
        DriftConfig(drift_share=0.0)
    with pytest.raises(ValueError):
        DriftConfig(top_labels=-1)


def test_label_frame_flattens_label_sets():
    labels = pd.DataFrame({
        "visual_labels": [["visual:n00000002", "visual:n00000003"], []],
        "visual_scores": [[0.6, 0.2], []],
        "audio_labels": [["audio:/m/04rlf", "audio:/m/09x0r"], []],
        "audio_scores": [[0.3, 0.9], []],  # not best first: the top label is found by score
    })
    columns = ["visual:n00000002", "visual:n00000003", SPEECH]
    frame = label_frame(labels, columns, {**VISUAL, **AUDIO})
    # The two ImageNet "crane"s keep apart; the audio label reads as its name.
    assert list(frame.columns) == [*NUMERIC_COLUMNS, "top_audio", "visual: crane (n00000002)",
                                   "visual: crane (n00000003)", "audio: Speech"]
    first, empty = frame.iloc[0], frame.iloc[1]
    assert (first["n_visual"], first["n_audio"]) == (2, 2)
    assert first["mean_visual_score"] == pytest.approx(0.4) and first["top_audio_score"] == pytest.approx(0.9)
    assert first["top_audio"] == "Speech"
    assert first[["visual: crane (n00000002)", "visual: crane (n00000003)", "audio: Speech"]].tolist() == [1, 1, 1]
    assert empty["top_audio"] == NO_AUDIO and empty["mean_audio_score"] == 0.0 and empty["audio: Speech"] == 0
    # Without names the ids stand in.
    assert label_frame(labels, [MUSIC], None).columns[-1] == "audio: /m/04rlf"


def test_pool_rare_categories_keeps_one_new_clip_from_reading_as_drift():
    reference = pd.Series(["Music"] * 70 + ["Silence"] * 27 + ["Animal"] * 3)
    current = pd.Series(["Music"] * 20 + ["Silence"] * 6 + ["Fire"])
    pooled_reference, pooled_current = pool_rare_categories(reference, current)
    assert set(pooled_reference) == {"Music", "Silence", RARE_AUDIO}
    assert set(pooled_current) == {"Music", "Silence", RARE_AUDIO}


def test_same_distribution_is_not_drift(tmp_path):
    previous = _run(tmp_path / "previous", _labels(300, speech=0.7, seed=1))
    # The reference given as a labels.parquet path works like its folder.
    current = _run(tmp_path / "current", _labels(200, speech=0.7, seed=2, prefix="d"))
    out = tmp_path / "drift"
    summary = label_drift(current, out, DriftConfig(reference=str(previous / "labels.parquet"), top_labels=8),
                          progress=False)

    assert summary["mode"] == "previous run"
    assert (summary["reference_clips"], summary["current_clips"]) == (300, 200)
    assert summary["columns"] == len(NUMERIC_COLUMNS) + 1 + 8
    assert not summary["dataset_drift"] and summary["drifted_share"] < 0.5
    assert summary["drifted_columns"] == len(summary["drifted"])
    assert "audio: Speech" not in summary["drifted"] and "top_audio" not in summary["drifted"]
    assert summary["label_shares"]["audio: Speech"]["reference"] == pytest.approx(0.7, abs=0.08)

    files = _files(out)
    assert set(files) == {"drift.html", "drift.json", "summary.json", "metrics.json"}
    headline = json.loads(files["metrics.json"].read_text())  # dvc metrics show: flat numbers and verdicts
    assert headline == {key: summary[key] for key in HEADLINE} and "per_column" not in headline
    page = files["drift.html"].read_text()
    assert "Dataset Drift" in page and "audio: Speech" in page and "mean_audio_score" in page
    assert json.loads(files["summary.json"].read_text()) == json.loads(json.dumps(summary))
    snapshot = json.loads(files["drift.json"].read_text())
    drift_metrics = [m for m in snapshot["metrics"] if m["config"]["type"].endswith(":ValueDrift")]
    assert len(drift_metrics) == summary["columns"]


def test_speech_turning_into_music_is_drift(tmp_path):
    previous = _run(tmp_path / "previous", _labels(200, speech=0.9, seed=3))
    current = _run(tmp_path / "current", _labels(150, speech=0.1, seed=4, prefix="d"))
    summary = label_drift(current, tmp_path / "drift", DriftConfig(reference=str(previous), top_labels=4,
                                                                    drift_share=0.25), progress=False)

    # Speech and Music are the most frequent labels, so they get columns, and both moved.
    assert {"audio: Speech", "audio: Music", "top_audio"} <= set(summary["drifted"])
    assert summary["dataset_drift"] and summary["drifted_share"] >= 0.25
    assert summary["per_column"]["audio: Music"]["drifted"]
    assert summary["label_shares"]["audio: Music"]["current"] > 0.8
    # The visual side was generated alike: its counts and scores did not move.
    assert not {"n_visual", "mean_visual_score", "top_visual_score"} & set(summary["drifted"])


def test_train_vs_val_from_one_table(tmp_path):
    table = pd.concat([_labels(160, speech=0.85, seed=5), _labels(60, speech=0.15, seed=6, split="val", prefix="v")],
                      ignore_index=True)
    summary = label_drift(_run(tmp_path / "labels", table, vocabulary=False), tmp_path / "drift",
                          DriftConfig(top_labels=5), progress=False)
    assert summary["mode"] == "train vs val"
    assert (summary["reference_clips"], summary["current_clips"]) == (160, 60)
    # No vocabulary beside the table: the label ids name the columns.
    assert "audio: /m/09x0r" in summary["drifted"]
    page = (tmp_path / "drift" / "drift.html").read_bytes()
    assert len(page) > 0
    # the same report is the same bytes (a forced `dvc repro` leaves dvc.lock as it was): evidently's random
    # element ids are numbered
    label_drift(tmp_path / "labels", tmp_path / "again", DriftConfig(top_labels=5), progress=False)
    assert (tmp_path / "again" / "drift.html").read_bytes() == page


def test_a_sample_of_a_side_absent_from_whole_batches(tmp_path):
    """Train rows fill the table's first batches and the val rows come last: a batch without a val
    clip gives the val side's hash sample no rows (it selected every column of none, once)."""
    table = pd.concat([_labels(9000, speech=0.5, seed=7), _labels(400, speech=0.5, seed=8, split="val", prefix="v")],
                      ignore_index=True)
    summary = label_drift(_run(tmp_path / "labels", table, vocabulary=False), tmp_path / "drift",
                          DriftConfig(top_labels=5, sample_clips=200), progress=False)
    assert (summary["reference_clips"], summary["current_clips"]) == (9000, 400)
    assert 100 < summary["sampled_clips"]["current"] < 300 and 100 < summary["sampled_clips"]["reference"] < 300


@pytest.mark.parametrize("mode", ["train vs val", "previous run"])
def test_nothing_to_compare_is_explained(tmp_path, mode):
    labels = _run(tmp_path / "labels", _labels(12, speech=0.5, seed=7))  # train only
    out = tmp_path / "drift"
    (out).mkdir()
    (out / "drift.json").write_text("{}")  # left by an earlier run in the same folder
    if mode == "previous run":
        empty = _run(tmp_path / "empty", _labels(0, speech=0.5, seed=8))
        cfg = DriftConfig(reference=str(empty))
    else:
        cfg = DriftConfig()
    summary = label_drift(labels, out, cfg, progress=False)

    assert summary["mode"] == mode and not summary["dataset_drift"] and summary["columns"] == 0
    expected = "no val clips" if mode == "train vs val" else "the reference run has no clips"
    assert expected in summary["explanation"]
    assert set(_files(out)) == {"drift.html", "summary.json", "metrics.json"}
    assert expected in (out / "drift.html").read_text()
    assert json.loads((out / "summary.json").read_text())["explanation"] == summary["explanation"]
