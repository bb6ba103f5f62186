"""Portable manifests: stage outputs name units relative to the data root, and a reader on another
root either makes a missing unit again with the stage that owns it or fails naming it and that stage."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from mmvideos.data import dataroot
from mmvideos.data.dataroot import DataRoot
from mmvideos.features.store import read_index
from mmvideos.stages.annotate import AudioConfig, MergeConfig, VisualConfig, annotate_audio, annotate_visual, merge_labels
from mmvideos.stages.clip import ClipConfig, clip_videos
from mmvideos.stages.features import FeatureConfig, extract_features
from mmvideos.stages.ingest import ingest, read_videos
from mmvideos.stages.pack import PackConfig, pack_features


def test_outputs_moved_to_another_root_are_read_there_and_missing_units_made_again(media_dir, tmp_path):
    first, second = tmp_path / "first", tmp_path / "elsewhere" / "second"
    root = DataRoot(first / "root")
    ingest(media_dir, first / "ingest", root, progress=False)
    clip_videos(read_videos(first / "ingest"), first / "clips", ClipConfig(), root, progress=False)
    manifest = dataroot.read_manifest(first / "clips")
    assert not manifest["uri"].str.startswith(("/", str(first))).any()  # relative to whichever root reads it
    assert (manifest["uri"] == [dataroot.unit_path("clip", k, f) for k, f in zip(manifest["key"], manifest["file"])]).all()

    second.mkdir(parents=True)
    shutil.copytree(first / "clips", second / "clips")  # what `dvc pull` brings: the outputs, not the data root
    shutil.rmtree(first)
    other = DataRoot(second / "root")
    audio = annotate_audio(second / "clips", second / "audio", AudioConfig(), other, progress=False)
    assert audio["shards_computed"] == 2 and audio["clips"] == 3
    # the clip units were cut again into this root, under the keys the pulled manifest names
    assert not other.missing(manifest) and not list(tmp_path.glob("first"))
    again = dataroot.read_manifest(second / "clips")
    assert all(other.find("clip", k)["files"][f]["sha256"] == s
               for k, f, s in zip(again["key"], again["file"], again["sha256"]))
    visual = annotate_visual(second / "clips", second / "visual", VisualConfig(batch_size=8), other, progress=False)
    assert visual["shards_computed"] == 2
    merge_labels(second / "clips", second / "visual", second / "audio", second / "labels", MergeConfig(), progress=False)
    features = extract_features(second / "clips", second / "labels", second / "features", other,
                                FeatureConfig(device="cpu"), progress=False)
    assert features["shards_computed"] == 2
    assert read_index(second / "features")["shard"].str.startswith("features/").all()

    # a reader that cannot make a unit (training packs the feature units) names it and its stage
    with pytest.raises(FileNotFoundError, match=r"the features unit features/.* is not in the data root .*third.*"
                                                r"`features` stage"):
        pack_features(second / "features", tmp_path / "packed-3", DataRoot(tmp_path / "packs"), PackConfig(),
                      str(tmp_path / "third"))
    packed = pack_features(second / "features", tmp_path / "packed", DataRoot(tmp_path / "packs"), PackConfig(),
                           str(second / "root"))
    assert packed["clips"] == len(read_index(second / "features"))

def test_a_clip_folder_without_its_recipe_names_the_missing_unit_and_its_stage(media_dir, tmp_path):
    root = DataRoot(tmp_path / "root")
    ingest(media_dir, tmp_path / "ingest", root, progress=False)
    clip_videos(read_videos(tmp_path / "ingest"), tmp_path / "clips", ClipConfig(), root, progress=False)
    (tmp_path / "clips" / "videos.parquet").unlink()
    with pytest.raises(FileNotFoundError, match=r"the clip unit clip/.* named by .*clips/manifest.parquet .* `clip` stage"):
        annotate_audio(tmp_path / "clips", tmp_path / "audio", AudioConfig(), DataRoot(tmp_path / "empty"),
                       progress=False)
    assert pd.read_parquet(tmp_path / "clips" / "clips.parquet")["shard"].isin(
        dataroot.read_manifest(tmp_path / "clips")["key"]).all()
