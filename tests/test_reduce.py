"""The streamed reduces (gathers, merge_labels) on generated corpora: the same tables as the
in-memory computation they replace, and memory that does not grow with the rows."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmvideos.bench.reduce import measure_step, write_synthetic, write_synthetic_features
from mmvideos.data import dataroot, tables
from mmvideos.data.atomic import write_parquet
from mmvideos.data.dataroot import DataRoot
from mmvideos.stages.annotate import LABEL_COLUMNS, MERGED_COLUMNS, MergeConfig, merge_labels
from mmvideos.stages.features import slot_labels


def reference_gather(parts: list[Path], name: str) -> pd.DataFrame:
    """The gather as it was: every part read whole, concatenated, sorted in memory."""
    read = [pd.read_parquet(part / name) for part in parts if (part / name).is_file()]
    table = dataroot.concat(read, list(read[0].columns))
    columns = [c for c in (["key", "file"] if name == dataroot.MANIFEST else ["clip_id"] if "clip_id" in table else ["uri"])
               if c in table]
    return table.sort_values(columns, kind="stable", ignore_index=True) if columns else table


def reference_labels(clips_dir: Path, visual_dir: Path, audio_dir: Path, min_count: int = 1) -> pd.DataFrame:
    """merge_labels' label table as it was computed: whole tables joined in pandas."""
    table = pd.read_parquet(clips_dir / "clips.parquet")[["clip_id", "video_id", "fold", "split"]]
    for modality, folder in (("visual", visual_dir), ("audio", audio_dir)):
        labelled = pd.read_parquet(folder / f"{modality}.parquet")
        labelled = labelled.rename(columns={"labels": f"{modality}_labels", "scores": f"{modality}_scores"})
        table = table.merge(labelled[["clip_id", f"{modality}_labels", f"{modality}_scores"]], on="clip_id", how="left")
        for column in (f"{modality}_labels", f"{modality}_scores"):
            table[column] = [list(v) if isinstance(v, (list, np.ndarray)) else [] for v in table[column]]
    counts: Counter[str] = Counter()
    for visual, audio in zip(table["visual_labels"], table["audio_labels"]):
        counts.update(set(visual) | set(audio))
    kept = {label for label, n in counts.items() if n >= min_count}
    table["label_ids"] = [[i for i in v + a if i in kept] for v, a in zip(table["visual_labels"], table["audio_labels"])]
    table = table[MERGED_COLUMNS].sort_values("clip_id", ignore_index=True)
    # as written and read back: lists come back as arrays
    return pd.DataFrame({c: table[c] if not c.endswith(("labels", "scores", "ids"))
                         else [np.asarray(v) for v in table[c]] for c in table})


def assert_same(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Equal tables: columns, order, dtypes and every value (lists compared element by element)."""
    assert list(actual.columns) == list(expected.columns)
    assert actual.dtypes.to_dict() == expected.dtypes.to_dict()
    assert len(actual) == len(expected)
    for column in actual:
        for a, e in zip(actual[column], expected[column]):
            assert np.array_equal(np.asarray(a), np.asarray(e)), (column, a, e)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, list[Path]]]:
    folder = tmp_path_factory.mktemp("corpus")
    parts = write_synthetic(folder, 3_000, slots=3, seed=1)
    # one part out of clip order, as a slot written by another tool might be: it is spilled as sorted runs
    shuffled = parts["annotate_audio"][1] / "audio.parquet"
    write_parquet(pd.read_parquet(shuffled).sample(frac=1.0, random_state=0), shuffled)
    return folder, parts


@pytest.mark.parametrize("stage, name", [("clip", "clips.parquet"), ("clip", "manifest.parquet"),
                                         ("annotate_visual", "visual.parquet"), ("annotate_audio", "audio.parquet")])
def test_streamed_gather_equals_the_in_memory_one(corpus, tmp_path, stage, name):
    _, parts = corpus
    dataroot.gather(parts[stage], tmp_path / stage, stage)
    assert_same(pd.read_parquet(tmp_path / stage / name), reference_gather(parts[stage], name))


def test_merge_of_runs_is_a_stable_sort_across_batches(tmp_path):
    # few distinct keys, tiny batches: equal keys span batch and run boundaries
    rng = np.random.default_rng(3)
    frames = [pd.DataFrame({"uri": rng.choice(list("abcde"), 500), "n": np.arange(500) + 1000 * i}) for i in range(3)]
    paths = []
    for i, frame in enumerate(frames):
        write_parquet(frame.sort_values("uri", kind="stable") if i != 1 else frame, tmp_path / f"{i}.parquet")
        paths.append(tmp_path / f"{i}.parquet")
    runs = tables.sorted_runs(paths, ["uri"], tmp_path, run_rows=64)
    merged = pd.concat([t.to_pandas() for t in tables.merge_runs(runs, ["uri"], tables.table_schema(paths),
                                                                  batch_rows=7)], ignore_index=True)
    expected = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True).sort_values("uri", kind="stable")
    assert merged.values.tolist() == expected.values.tolist()


def test_gather_of_empty_parts_writes_an_empty_table(tmp_path):
    for i in range(2):
        write_parquet(pd.DataFrame(columns=["clip_id", "video_id"]), tmp_path / f"p{i}" / "clips.parquet")
    dataroot.gather([tmp_path / "p0", tmp_path / "p1"], tmp_path / "all", "clip")
    assert_same(pd.read_parquet(tmp_path / "all" / "clips.parquet"), reference_gather([tmp_path / "p0"], "clips.parquet"))


@pytest.mark.parametrize("min_count", [1, 40])
def test_streamed_merge_labels_equals_the_in_memory_join(corpus, tmp_path, min_count):
    _, parts = corpus
    for stage in parts:
        dataroot.gather(parts[stage], tmp_path / stage, stage)
    folders = [tmp_path / s for s in ("clip", "annotate_visual", "annotate_audio")]
    summary = merge_labels(*folders, tmp_path / "labels", MergeConfig(min_count=min_count), progress=False)
    expected = reference_labels(*folders, min_count)
    assert_same(pd.read_parquet(tmp_path / "labels" / "labels.parquet"), expected)
    assert summary["clips"] == len(expected) == 3_000
    assert summary["mean_labels_per_clip"] == round(float(expected["label_ids"].map(len).mean()), 3)
    assert summary["clips_without_audio"] == int((expected["audio_labels"].map(len) == 0).sum()) > 0
    assert json.loads((tmp_path / "labels" / "summary.json").read_text())["vocabulary_used"] == summary[
        "vocabulary_used"]


@pytest.mark.parametrize("step", ["gather_visual", "merge_labels", "label_drift"])
def test_peak_memory_does_not_grow_with_the_rows(tmp_path, step):
    """The step in a child process at 40 k and 160 k clips: four times the rows, at most 100 MB more peak.

    Measured on a 2-core machine between 40 k and 80 k clips: the in-memory gather grew
    244 -> 301 MB and the in-memory merge_labels 373 -> 484 MB, so about 170 and 330 MB over
    this span; the streamed ones by 0 to 31 MB (they hold a few row groups per input and
    arrow's allocator keeps some; two slots, so each input is past that size), and by 20 to 50 MB
    over it. Four times the rows keeps that noise well apart from growth with the corpus.
    label_drift grew 101 MB over the span while its tables were read with pyarrow's whole-file
    ``iter_batches``, whose read-ahead grows with the file; read a row group at a time
    (``tables.read_batches``), its sample and evidently's frames are what it holds.
    """
    peaks = []
    for clips in (40_000, 160_000):
        corpus = tmp_path / str(clips)
        parts = write_synthetic(corpus, clips, slots=2)
        if step != "gather_visual":  # its inputs, made here: only the step itself is measured
            for stage, folders in parts.items():
                dataroot.gather(folders, corpus / stage, stage)
        if step == "label_drift":
            merge_labels(*(corpus / s for s in ("clip", "annotate_visual", "annotate_audio")), corpus / "labels",
                         MergeConfig(), progress=False)
        options = {"sample_clips": 10_000} if step == "label_drift" else {}  # the sample, not the table, is held
        peaks.append(measure_step(step, corpus, **options)["peak_mb"])
    assert peaks[1] - peaks[0] < 100, peaks


def test_pack_and_pretrain_start_up_memory_does_not_grow_with_the_clips(tmp_path):
    """The pack step and one rank's start-up plus an epoch of its loader, at 20 k and 80 k clips."""
    peaks = {"pack": [], "pretrain_start": []}
    for clips in (20_000, 80_000):
        write_synthetic_features(tmp_path / str(clips), clips)
        for step in peaks:
            peaks[step].append(measure_step(step, tmp_path / str(clips))["peak_mb"])
        epoch = json.loads((tmp_path / str(clips) / "epoch.json").read_text())
        assert epoch["samples"] == len(pd.read_parquet(tmp_path / str(clips) / "features" / "index.parquet",
                                                       filters=[("split", "==", "train")]))
    assert all(b - a < 100 for a, b in peaks.values()), peaks


def test_streamed_label_drift_equals_the_whole_table_report(corpus, tmp_path):
    from mmvideos.stages.drift import (DriftConfig, Side, column_names, label_drift, label_frame, read_names,
                                       read_sides, sample_frames)

    _, parts = corpus
    for stage in parts:
        dataroot.gather(parts[stage], tmp_path / stage, stage)
    folders = [tmp_path / s for s in ("clip", "annotate_visual", "annotate_audio")]
    merge_labels(*folders, tmp_path / "labels", MergeConfig(), progress=False)
    whole = pd.read_parquet(tmp_path / "labels" / "labels.parquet")
    summary = label_drift(tmp_path / "labels", tmp_path / "drift", DriftConfig(), progress=False)
    # as it was computed: the whole table in memory, shares from every row, evidently on every row
    sides = {"reference": whole[whole["split"] == "train"], "current": whole[whole["split"] == "val"]}
    shares = {}
    for side, table in sides.items():
        counts = Counter()
        for visual, audio in zip(table["visual_labels"], table["audio_labels"]):
            counts.update(set(visual) | set(audio))
        shares[side] = {label: n / len(table) for label, n in counts.items()}
    either = {i: max(shares["reference"].get(i, 0.0), shares["current"].get(i, 0.0))
              for i in set(shares["reference"]) | set(shares["current"])}
    chosen = sorted(sorted(either), key=lambda i: -either[i])[:20]
    readable = column_names(chosen, read_names(tmp_path / "labels"))
    assert summary["label_shares"] == {readable[i]: {side: round(shares[side].get(i, 0.0), 4) for side in sides}
                                       for i in chosen}
    frames = {side: label_frame(table, chosen) for side, table in sides.items()}
    table = tmp_path / "labels" / "labels.parquet"  # train and val read together, in batches of 500 rows
    streamed = read_sides([Side(table, "train"), Side(table, "val")], batch_rows=500)
    assert [side.clips for side in streamed] == [len(sides["reference"]), len(sides["current"])]
    for frame, side in zip(sample_frames(streamed, chosen, {}, 10**6, batch_rows=500), sides):
        pd.testing.assert_frame_equal(frame, frames[side])
    assert summary["sampled_clips"] == {side: len(table) for side, table in sides.items()}
    assert "every clip" in summary["method"] and summary["method"] in (tmp_path / "drift" / "drift.html").read_text()
    # a sample: the same clips on every run, about the size asked, shares still over every clip
    sampled = label_drift(tmp_path / "labels", tmp_path / "sampled", DriftConfig(sample_clips=500), progress=False)
    assert 350 < sampled["sampled_clips"]["reference"] < 650 and sampled["label_shares"] == summary["label_shares"]
    assert "hash sample" in sampled["method"]
    assert label_drift(tmp_path / "labels", tmp_path / "again", DriftConfig(sample_clips=500),
                       progress=False)["per_column"] == sampled["per_column"]
    assert summary["reference_clips"] == len(sides["reference"])


def test_a_features_slot_reads_only_its_own_label_rows(corpus, tmp_path):
    _, parts = corpus
    for stage in parts:
        dataroot.gather(parts[stage], tmp_path / stage, stage)
    merge_labels(*(tmp_path / s for s in ("clip", "annotate_visual", "annotate_audio")), tmp_path / "labels",
                 MergeConfig(), progress=False)
    whole = pd.read_parquet(tmp_path / "labels" / "labels.parquet")
    slots, seen = 3, 0
    for slot in range(slots):
        videos = dataroot.slot_units(tmp_path / "clip", "audio.tar", DataRoot(tmp_path / "root"), slot, slots)["video_id"]
        mine = slot_labels(tmp_path / "labels", videos)
        expected = whole[whole["video_id"].isin(set(videos))].set_index("clip_id")[list(mine.columns)]
        assert_same(mine.reset_index(), expected.reset_index())
        seen += len(mine)
    assert seen == len(whole)
    assert slot_labels(tmp_path / "labels", []).empty  # a slot with no video (more slots than videos)


def test_a_table_is_read_a_row_group_at_a_time_in_bounded_memory(tmp_path):
    """tables.read_batches: the rows in order, no batch across two row groups, and a reader's peak that
    does not grow with the file (pyarrow's whole-file iter_batches grew 62 MB from 160 k to 640 k label rows)."""
    from mmvideos.data.tables import read_batches

    table = pa.table({"clip_id": [f"c{i:07d}" for i in range(50_000)], "n": list(range(50_000))})
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=8192)
    batches = list(read_batches(tmp_path / "t.parquet", batch_rows=5000, columns=["n"]))
    assert pa.Table.from_batches(batches).column("n").to_pylist() == list(range(50_000))
    assert max(b.num_rows for b in batches) == 5000 and batches[1].num_rows == 8192 - 5000  # the row group's rest
    assert batches[0].schema.names == ["n"]


def test_the_sizing_plan_shows_the_reduce_side():
    from mmvideos.bench.reduce import extrapolate
    from mmvideos.bench.scale import sizing_plan

    saved = json.loads((Path(__file__).parents[1] / "bench" / "scale.json").read_text())
    page = sizing_plan(**saved)
    assert "## The reduce side" in page and "merge_labels | " in page
    # a flat peak stays flat at 15 M clips; time is never extrapolated better than linear
    assert extrapolate([10_000, 100_000], [200.0, 200.0], power=False) == pytest.approx(200.0)
    assert extrapolate([10_000, 100_000], [1.0, 2.0], power=True) == pytest.approx(2.0 * 150)
    # label_drift holds the rows it samples: at most sample_clips a side, however large the corpus
    from mmvideos.bench.reduce import sampled_at_15m, with_inputs

    assert sampled_at_15m({"clips": [10_000, 1_000_000], "sides": [[9_333, 667], [933_333, 66_667]]},
                          cap=200_000) == 2 * 200_000
    # `--only`: a chosen step runs with the steps whose output it reads, and nothing else
    assert with_inputs(("label_drift",)) == ["gather_clips", "gather_visual", "gather_audio", "merge_labels",
                                             "label_drift"]
    assert with_inputs(("near_duplicates",)) == ["near_duplicates"]
    assert sampled_at_15m({"clips": [1_000_000], "sides": [[933_333, 66_667]]}, cap=10**9) == 15_000_000


def test_merge_labels_with_an_annotator_that_labelled_nothing(corpus, tmp_path):
    _, parts = corpus
    for stage in ("clip", "annotate_visual"):
        dataroot.gather(parts[stage], tmp_path / stage, stage)
    (tmp_path / "annotate_audio").mkdir()
    write_parquet(pd.DataFrame(columns=LABEL_COLUMNS), tmp_path / "annotate_audio" / "audio.parquet")
    (tmp_path / "annotate_audio" / "classes.csv").write_bytes((parts["annotate_audio"][0] / "classes.csv").read_bytes())
    folders = [tmp_path / s for s in ("clip", "annotate_visual", "annotate_audio")]
    summary = merge_labels(*folders, tmp_path / "labels", MergeConfig(), progress=False)
    assert_same(pd.read_parquet(tmp_path / "labels" / "labels.parquet"), reference_labels(*folders))
    assert summary["clips_without_audio"] == summary["clips"] == 3_000
