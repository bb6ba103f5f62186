"""The data plane: content-addressed units in a data root, maps over task slots, incremental runs.

Every test runs the stage functions the Kubeflow components call, on real generated videos, with
the real annotators; a ``Plane`` runs one stage chain with N task slots as the DAG does (map per
slot, then the gather).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from media_fixtures import write_corpus
from mmvideos.data import dataroot, storage
from mmvideos.data.dataroot import DataRoot, collect_garbage, gather
from mmvideos.data.runrecord import read_summary
from mmvideos.features.store import iter_features, read_index
from mmvideos.stages.annotate import (
    AudioConfig,
    MergeConfig,
    VisualConfig,
    annotate_audio,
    annotate_visual,
    merge_labels,
)
from mmvideos.stages.clip import ClipConfig, clip_videos
from mmvideos.stages.features import FeatureConfig, extract_features
from mmvideos.stages.ingest import IngestConfig, gather_probes, list_source, probe_listing, read_videos


def run_plane(source: str | Path, root: str, out: Path, slots: int, audio: AudioConfig = AudioConfig(),
              clip: ClipConfig = ClipConfig()) -> dict[str, Path]:
    """ingest -> clip -> annotate (both) -> merge -> features, each map over ``slots`` slots."""
    data = DataRoot(root)

    def fan(stage: str, run) -> Path:
        parts = []
        for slot in range(slots):
            part = out / f"{stage}-{slot}"
            run(part, slot)
            parts.append(part)
        gather(parts, out / stage, stage, data)
        return out / stage

    fingerprint = list_source(str(source), data)
    for slot in range(slots):
        probe_listing(data, fingerprint, out / f"probe-{slot}", slot, slots, progress=False)
    gather_probes([out / f"probe-{s}" for s in range(slots)], out / "ingest", IngestConfig(), data)
    videos = read_videos(out / "ingest")
    clips = fan("clip", lambda part, slot: clip_videos(videos, part, clip, data, slot, slots, progress=False))
    visual = fan("annotate_visual", lambda part, slot: annotate_visual(clips, part, VisualConfig(), data, slot, slots,
                                                                       progress=False))
    heard = fan("annotate_audio", lambda part, slot: annotate_audio(clips, part, audio, data, slot, slots,
                                                                    progress=False))
    merge_labels(clips, visual, heard, out / "labels", MergeConfig(), progress=False)
    features = fan("features", lambda part, slot: extract_features(clips, out / "labels", part, data, FeatureConfig(),
                                                                   slot, slots, progress=False))
    return {"ingest": out / "ingest", "clip": clips, "visual": visual, "audio": heard, "labels": out / "labels",
            "features": features}


def summary(folder: Path) -> dict:
    """A stage folder's summary with its run record (reuse counts, seconds)."""
    return read_summary(folder)


def labels_table(folder: Path) -> pd.DataFrame:
    return pd.read_parquet(folder / "labels.parquet").sort_values("clip_id", ignore_index=True)


def portable_index(folder: Path, root: str) -> pd.DataFrame:
    """The feature index as written: shards named relative to the data root, whichever it is."""
    index = read_index(folder)
    assert not index["shard"].str.startswith(("/", "gs://", DataRoot(root).uri)).any()
    return index


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """24 short videos with sound (each its own tone), and 2 more kept aside."""
    folder = tmp_path_factory.mktemp("corpus")
    write_corpus(folder / "videos", 24)
    write_corpus(folder / "later", 2, start=24)
    return folder


@pytest.fixture(scope="module")
def grown(corpus, tmp_path_factory) -> dict:
    """One data root: a run over 24 videos, then 2 added and a second run."""
    work = tmp_path_factory.mktemp("grown")
    source = work / "source"
    shutil.copytree(corpus / "videos", source)
    root = str(work / "root")
    first = run_plane(source, root, work / "first", slots=3)
    for video in (corpus / "later").iterdir():
        shutil.copy(video, source / video.name)
    second = run_plane(source, root, work / "second", slots=3)
    return {"root": root, "source": source, "first": first, "second": second, "work": work}


def test_a_unit_is_invisible_until_committed_and_never_rewritten(tmp_path):
    data = DataRoot(tmp_path / "root")
    key = dataroot.unit_key("clip", sha256="abc", settings={})
    (tmp_path / "a.tar").write_bytes(b"one")
    storage.put_file(tmp_path / "a.tar", storage.join(data.unit("clip", key), "a.tar"))  # files, no commit
    assert data.find("clip", key) is None
    calls = []

    def compute(item, scratch):
        calls.append(item)
        (scratch / "a.tar").write_bytes(b"two")
        return {"clips": 1}, {"a.tar": scratch / "a.tar"}

    records, counts, _ = data.map_units("clip", [(key, "x")], compute)
    assert counts.computed == 1 and records[0]["files"]["a.tar"]["bytes"] == 3
    records, counts, _ = data.map_units("clip", [(key, "x")], compute)
    assert counts.reused == 1 and calls == ["x"] and records[0]["reused"]
    shutil.copytree(data.uri, tmp_path / "moved")  # a root copied elsewhere finds its units there
    moved = DataRoot(tmp_path / "moved").find("clip", key)["files"]["a.tar"]["uri"]
    assert moved == str(tmp_path / "moved" / "clip" / key[:2] / key / "a.tar") and Path(moved).read_bytes() == b"two"


def test_refuses_a_gs_lookalike_root():
    with pytest.raises(ValueError, match="gs://"):
        DataRoot("gs:/bucket/x")
    with pytest.raises(ValueError, match="no data root"):
        DataRoot("")


def test_one_and_three_slots_give_identical_tables_and_shards(corpus, grown, tmp_path):
    one = run_plane(grown["source"], str(tmp_path / "root"), tmp_path / "one", slots=1)
    three = grown["second"]
    pd.testing.assert_frame_equal(labels_table(one["labels"]), labels_table(three["labels"]))
    pd.testing.assert_frame_equal(portable_index(one["features"], str(tmp_path / "root")),
                                  portable_index(three["features"], grown["root"]))
    for output in ("clip", "visual", "audio", "features"):
        a, b = dataroot.read_manifest(one[output]), dataroot.read_manifest(three[output])
        assert list(a["key"]) == list(b["key"])
        assert list(a["sha256"]) == list(b["sha256"])  # byte-identical shards under the same keys


def test_adding_two_videos_computes_only_their_clips(grown, tmp_path):
    first, second = grown["first"], grown["second"]
    assert summary(first["clip"])["shards_computed"] == 24
    clip = summary(second["clip"])
    assert (clip["shards_computed"], clip["shards_reused"]) == (2, 24)  # decodes exactly 2 videos
    assert summary(second["ingest"])["shards_computed"] == 2  # probes only the new files
    new_clips = clip["clips_computed"]
    for stage in ("visual", "audio", "features"):
        assert summary(second[stage])["clips_computed"] == new_clips
        assert summary(second[stage])["shards_reused"] == 24
    scratch = run_plane(grown["source"], str(tmp_path / "fresh"), tmp_path / "fresh-run", slots=2)
    pd.testing.assert_frame_equal(labels_table(second["labels"]), labels_table(scratch["labels"]))


def test_a_new_threshold_runs_no_network_and_matches_a_fresh_run(grown, tmp_path):
    clips = grown["second"]["clip"]
    cfg = AudioConfig(threshold=0.2, top_k=3)
    reused = annotate_audio(clips, tmp_path / "reused", cfg, DataRoot(grown["root"]), progress=False)
    assert reused["clips_computed"] == 0 and reused["shards_computed"] == 0
    fresh = annotate_audio(clips, tmp_path / "fresh", cfg, DataRoot(tmp_path / "fresh-root"), progress=False)
    assert fresh["clips_computed"] == reused["clips"] > 0
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "reused" / "audio.parquet"),
                                  pd.read_parquet(tmp_path / "fresh" / "audio.parquet"))
    before = pd.read_parquet(grown["second"]["audio"] / "audio.parquet")
    assert before["labels"].map(len).sum() > pd.read_parquet(tmp_path / "reused" / "audio.parquet")["labels"].map(len).sum()


def test_new_labels_reuse_every_feature_shard(grown, tmp_path):
    features = extract_features(grown["second"]["clip"], grown["second"]["labels"], tmp_path / "f",
                                DataRoot(grown["root"]), progress=False)
    assert features["shards_computed"] == 0 and features["shards_reused"] == 26


def test_a_killed_map_task_leaves_no_visible_half_shard(corpus, tmp_path):
    data = DataRoot(tmp_path / "root")
    run_plane(corpus / "videos", data.uri, tmp_path / "warm", slots=1)  # probes and tables for the clip task
    videos_dir = tmp_path / "warm" / "ingest"
    cfg = ClipConfig(jpeg_quality=70)  # other settings: every unit is new
    command = [sys.executable, "-c",
               "import sys; from mmvideos.stages.clip import ClipConfig, clip_videos; from mmvideos.data.dataroot import DataRoot;"
               "from mmvideos.stages.ingest import read_videos;"
               "clip_videos(read_videos(sys.argv[1]), sys.argv[2], ClipConfig(jpeg_quality=70), DataRoot(sys.argv[3]),"
               " progress=False)", str(videos_dir), str(tmp_path / "killed"), data.uri]
    process = subprocess.Popen(command)
    clip_dir = Path(data.uri) / "clip"
    before = {p.parent for p in clip_dir.rglob(dataroot.COMMIT)}
    deadline = time.monotonic() + 120
    while len({p.parent for p in clip_dir.rglob(dataroot.COMMIT)} - before) < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    committed = {p.parent for p in clip_dir.rglob(dataroot.COMMIT)} - before
    assert 3 <= len(committed) < 24, "the task should have been killed half-way"
    videos = read_videos(videos_dir)
    keys = [dataroot.unit_key("clip", sha256=v.sha256, duration_s=float(v.duration_s), settings=dataclasses.asdict(cfg))
            for v in videos.itertuples()]
    found = [k for k in keys if data.find("clip", k) is not None]
    assert {Path(data.unit("clip", k)) for k in found} == committed  # only complete units are visible
    rerun = clip_videos(videos, tmp_path / "rerun", cfg, data, progress=False)
    assert rerun["shards_reused"] == len(committed) and rerun["shards_computed"] == 24 - len(committed)


def test_gc_lists_then_deletes_what_no_kept_manifest_names(corpus, tmp_path):
    data = DataRoot(tmp_path / "root")
    old = run_plane(corpus / "videos", data.uri, tmp_path / "old", slots=1, clip=ClipConfig(jpeg_quality=80))
    time.sleep(1.1)  # manifests are ordered by time
    new = run_plane(corpus / "videos", data.uri, tmp_path / "new", slots=1)
    listed = collect_garbage(data.uri, keep_runs=1, min_age_s=0)
    old_clips = {data.resolve(u) for u in dataroot.read_manifest(old["clip"])["uri"]}  # named relative to the root
    assert old_clips <= set(listed.files)  # the old clip shards and everything derived from them
    assert not {data.resolve(u) for u in dataroot.read_manifest(new["clip"])["uri"]} & set(listed.files)
    assert all(storage.exists(u) for u in old_clips)  # listing deletes nothing
    assert collect_garbage(data.uri, keep_runs=1, min_age_s=3600).files == []  # too young to collect
    collect_garbage(data.uri, keep_runs=1, min_age_s=0, delete=True)
    assert not any(storage.exists(u) for u in old_clips)
    assert all(storage.exists(data.resolve(u)) for u in dataroot.read_manifest(new["features"])["uri"])
    again = extract_features(new["clip"], new["labels"], tmp_path / "again", data, progress=False)
    assert again["shards_computed"] == 0


def test_gc_removes_the_scratch_folders_a_killed_run_left(tmp_path):
    """Issue 22, finding 9: a kill -9 mid-step leaves its scratch folder in the temporary folder for
    good. Scratch folders carry their process's id: gc removes those whose process has ended and
    keeps a live one's."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    hold = ("import sys, time; from pathlib import Path; from mmvideos.data.atomic import scratch_dir\n"
            "with scratch_dir('merge') as folder:\n"
            "    (Path(folder) / 'joined.parquet').write_bytes(b'x' * 1000); print(folder, flush=True); time.sleep(60)")
    env = {**os.environ, "TMPDIR": str(scratch)}
    killed, alive = (subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True, env=env)
                     for _ in range(2))
    try:
        left, live = Path(killed.stdout.readline().strip()), Path(alive.stdout.readline().strip())
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        assert left.is_dir() and left.parent == scratch  # what the kill leaves
        gc = [sys.executable, "-m", "mmvideos.cli", "gc", "--data-root", str(tmp_path / "root"), "--min-age-hours", "0"]
        listed = subprocess.run(gc, env=env, capture_output=True, text=True, check=True)
        assert listed.stdout.split() == [str(left)] and "1 scratch folders of ended runs" in listed.stderr
        assert left.is_dir()  # listing deletes nothing
        subprocess.run([*gc, "--delete"], env=env, capture_output=True, text=True, check=True)
        assert not left.exists() and live.is_dir()
    finally:
        alive.kill()
        alive.wait()


def test_the_same_shape_on_gcs(corpus, gcs_bucket, tmp_path):
    source = tmp_path / "four"
    source.mkdir()
    for video in sorted((corpus / "videos").iterdir())[:4]:
        shutil.copy(video, source)
    root = f"{gcs_bucket('plane')}/root"
    outputs = run_plane(source, root, tmp_path / "gcs", slots=2)
    index = read_index(outputs["features"], root)
    assert len(index) == 4 and all(u.startswith(root + "/features/") for u in index["shard"])
    records = list(iter_features(outputs["features"], root=root))
    assert {r.clip_id for r in records} == set(index["clip_id"]) and records[0].mel.shape[1:] == (100, 64)
    again = run_plane(source, root, tmp_path / "gcs-again", slots=2)
    assert all(summary(again[s])["shards_computed"] == 0 for s in ("clip", "visual", "audio", "features"))
    assert collect_garbage(root, keep_runs=1, min_age_s=0).files == []
