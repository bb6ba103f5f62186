"""Verify on read: a reused unit is checked against its commit record, a corrupt one quarantined
and recomputed, never silently used (mmvideos.data.integrity, `mmvideos verify`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from media_fixtures import tone, write_media

from mmvideos.cli import main
from mmvideos.data import integrity
from mmvideos.data.dataroot import DataRoot
from mmvideos.stages.annotate import VisualConfig, annotate_visual
from mmvideos.stages.clip import ClipConfig, clip_videos, read_clips
from mmvideos.stages.ingest import ingest, read_videos


def flip_bit(path: Path, offset: int, bit: int = 0) -> None:
    """Flip one bit of a file at rest, as a bad disk or a cosmic ray does."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


class Brightness(torch.nn.Module):
    """A two-class TorchScript 'annotator': dark vs bright frames (fast, no download)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bright = x.mean(dim=(1, 2, 3))
        return torch.stack([-10 * (bright - 0.5), 10 * (bright - 0.5)], 1)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A data root made by ingest, clip and a visual annotator over two videos."""
    root = tmp_path_factory.mktemp("verify")
    source = root / "src"
    source.mkdir()
    write_media(source / "a.mp4", 7.0, audio=tone(7.0))
    write_media(source / "b.mp4", 4.0, audio=tone(4.0, hz=660.0))
    data = DataRoot(root / "data")
    ingest(source, root / "ingest", data, progress=False)
    clip_videos(read_videos(root / "ingest"), root / "clips", ClipConfig(frame_size=32), data, progress=False)
    torch.jit.script(Brightness()).save(str(root / "bright.pt"))
    pd.DataFrame({"id": ["dark", "bright"], "name": ["Dark", "Bright"]}).to_csv(root / "bright.csv", index=False)
    cfg = VisualConfig(model="torchscript", weights=str(root / "bright.pt"), labels=str(root / "bright.csv"),
                       activation="softmax", mean=(0, 0, 0), std=(255, 255, 255), top_k=2, runtime="torch",
                       image_size=32)
    annotate_visual(root / "clips", root / "visual", cfg, data, progress=False)
    return root, data, cfg


def _copy(made, tmp_path) -> tuple[Path, DataRoot]:
    """A private copy of the made root (each test corrupts its own)."""
    root = made[0]
    shutil.copytree(root / "data", tmp_path / "data")
    integrity._VERIFIED.clear()  # another process: nothing verified yet
    return root, DataRoot(tmp_path / "data")


def _units(data: DataRoot, stage: str) -> list[Path]:
    return sorted(p.parent for p in Path(data.uri, stage).rglob("COMMIT.json"))


def test_a_flipped_bit_in_a_clip_commit_is_caught_and_the_unit_recomputed(made, tmp_path):
    """Before: one bit in COMMIT.json changed a clip's end_s (3.5 -> 2.5 s, under clip.min_s) and
    the next run used it without complaint."""
    root, data = _copy(made, tmp_path)
    commit = next(u / "COMMIT.json" for u in _units(data, "clip") if '"end_s": 3.5' in (u / "COMMIT.json").read_text())
    text = commit.read_text()
    offset = text.index('"end_s": 3.5') + len('"end_s": ')
    flip_bit(commit, offset, 0)  # '3' (0x33) -> '2' (0x32)
    assert '"end_s": 2.5' in commit.read_text()
    summary = clip_videos(read_videos(root / "ingest"), tmp_path / "clips", ClipConfig(frame_size=32), data,
                          progress=False)
    assert summary["shards_computed"] == 1 and summary["shards_reused"] == 1
    pd.testing.assert_frame_equal(read_clips(tmp_path / "clips"), read_clips(root / "clips"))
    moved = list(Path(data.uri, "quarantine", "clip").iterdir())
    assert len(moved) == 1 and moved[0].name.startswith(commit.parent.name)


def test_a_flipped_bit_in_annotate_scores_is_caught_and_the_unit_recomputed(made, tmp_path):
    """Before: one bit in scores.parquet changed a class and the next run went on with it."""
    root, data, cfg = *_copy(made, tmp_path), made[2]
    scores = _units(data, "annotate_visual")[0] / "scores.parquet"
    flip_bit(scores, scores.stat().st_size // 2, 3)
    summary = annotate_visual(root / "clips", tmp_path / "visual", cfg, data, progress=False)
    assert summary["shards_computed"] == 1 and summary["shards_reused"] == len(_units(data, "annotate_visual")) - 1
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "visual" / "visual.parquet"),
                                  pd.read_parquet(root / "visual" / "visual.parquet"))


def test_a_commit_that_is_not_json_names_its_path(made, tmp_path):
    _, data = _copy(made, tmp_path)
    commit = _units(data, "probe")[0] / "COMMIT.json"
    commit.write_bytes(commit.read_bytes()[:40])
    with pytest.raises(integrity.CorruptUnit, match=f"{commit}: not a valid commit record"):
        integrity.verified(str(commit.parent), commit.read_bytes())


def test_verify_walks_the_root_and_repair_quarantines(made, tmp_path, capsys):
    _, data = _copy(made, tmp_path)
    assert main(["verify", "--data-root", data.uri]) == 0
    clip_unit, scores_unit = _units(data, "clip")[1], _units(data, "annotate_visual")[1]
    flip_bit(clip_unit / "frames.tar", 700, 5)
    flip_bit(scores_unit / "COMMIT.json", 30, 1)
    integrity._VERIFIED.clear()
    capsys.readouterr()
    assert main(["verify", "--data-root", data.uri]) == 1
    out = capsys.readouterr().out
    assert f"clip {clip_unit.name}: {clip_unit / 'frames.tar'}: corrupt" in out
    assert f"annotate_visual {scores_unit.name}:" in out and clip_unit.exists()
    assert main(["verify", "--data-root", data.uri, "--repair"]) == 0
    assert not clip_unit.exists() and not scores_unit.exists()
    assert len(list(Path(data.uri, "quarantine").glob("*/*"))) == 2
    assert main(["verify", "--data-root", data.uri]) == 0


def test_gc_keeps_what_single_stage_runs_made(made, tmp_path, capsys):
    """Before: clip, annotate-* and features run alone (the CLI, dvc.yaml) recorded no manifest,
    so gc deleted every clip and annotation unit of a DVC-made root."""
    from mmvideos.data.dataroot import collect_garbage

    _, data = _copy(made, tmp_path)
    stray = Path(data.uri, "clip", "ff", "f" * 64)
    stray.mkdir(parents=True)
    (stray / "audio.tar").write_bytes(b"no run names this unit")
    leftover = _units(data, "clip")[0] / ".frames.tar.abc123.tmp"  # a write killed half-way
    leftover.write_bytes(b"half a shard")
    found = collect_garbage(data.uri, keep_runs=1, min_age_s=0)
    assert sorted(found.files) == sorted([str(stray / "audio.tar"), str(leftover)]) and found.units == 1
    assert found.kept_units == sum(len(_units(data, s)) for s in ("probe", "clip", "annotate_visual"))
    capsys.readouterr()
    assert main(["gc", "--data-root", data.uri, "--keep-runs", "0"]) == 2  # a usage error
    assert "--keep-runs: must be at least 1" in capsys.readouterr().err
    with pytest.raises(ValueError, match="at least 1"):
        collect_garbage(data.uri, keep_runs=-1)


def test_a_gcs_unit_is_checked_against_one_listing(gcs_bucket, tmp_path, monkeypatch):
    """On GCS a reused unit is checked by its objects' sizes and MD5s (no download); a replaced
    object is caught and the unit quarantined."""
    from mmvideos.data import storage

    data = DataRoot(f"{gcs_bucket('verify')}/root")
    (tmp_path / "scores.parquet").write_bytes(b"scores " * 100)
    data.commit("features", "ab" * 32, {"features.tar": tmp_path / "scores.parquet"}, {"clips": 1})
    integrity._VERIFIED.clear()

    def no_download(*_):
        raise AssertionError("a unit's shard was downloaded to verify it")

    monkeypatch.setattr(storage, "local_copy", no_download)
    assert data.find("features", "ab" * 32) is not None
    storage.put_bytes(b"other bytes " * 60, f"{data.unit('features', 'ab' * 32)}/features.tar")
    integrity._VERIFIED.clear()
    assert data.find("features", "ab" * 32) is None
    assert storage.list_files(f"{data.uri}/quarantine/features")
    assert not storage.list_files(data.unit("features", "ab" * 32))
