"""Every stage's ``--output`` writes to ``gs://`` (the real emulator), whole or not at all, or
refuses with a clear error; it never makes a local folder named ``gs:``."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mmvideos.cli import main
from mmvideos.data import storage


def _objects(uri: str) -> dict[str, bytes]:
    return {u[len(uri) + 1:]: storage.read_bytes(u) for u in storage.list_gcs(uri + "/")}


@pytest.mark.parametrize("output", ["gs:/bucket/ingest", "s3://bucket/ingest", "gs://bucket", "gs://"])
def test_a_bad_output_uri_is_refused_and_nothing_is_made(output, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["ingest", "--source", str(tmp_path), "--output", output]) == 2
    assert "error" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    assert main(["fingerprint-source", "--source", str(tmp_path), "--output", output]) == 2
    assert main(["run", "--workdir", output]) == 2
    assert list(tmp_path.iterdir()) == []


def test_output_folder_is_whole_or_absent(gcs_bucket, tmp_path):
    uri = f"{gcs_bucket('outputs')}/atomic"
    with storage.output_folder(uri) as out:
        (out / "a.txt").write_text("one")
        (out / "sub").mkdir()
        (out / "sub" / "b.txt").write_text("two")
    assert _objects(uri) == {"a.txt": b"one", "sub/b.txt": b"two", storage.COMPLETE_MARKER: _objects(uri)[
        storage.COMPLETE_MARKER]}
    assert storage.output_complete(uri)
    # a stage that fails uploads nothing: the earlier output stays whole
    with pytest.raises(RuntimeError), storage.output_folder(uri) as out:
        (out / "a.txt").write_text("half")
        raise RuntimeError("stage failed")
    assert storage.read_bytes(f"{uri}/a.txt") == b"one" and storage.output_complete(uri)
    # a new output replaces the old one: stale files go, the marker is rewritten last
    with storage.output_folder(uri) as out:
        (out / "c.txt").write_text("three")
    assert set(_objects(uri)) == {"c.txt", storage.COMPLETE_MARKER}
    assert json.loads(storage.read_bytes(f"{uri}/{storage.COMPLETE_MARKER}"))["files"].keys() == {"c.txt"}
    # a file replaced behind the marker's back: the folder no longer counts as complete
    storage.put_bytes(b"other", f"{uri}/c.txt")
    assert not storage.output_complete(uri)
    assert not storage.output_complete(f"{gcs_bucket('outputs')}/never-written")


def test_single_file_outputs_go_to_gcs(gcs_bucket, media_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    uri = f"{gcs_bucket('outputs')}/listing/source.json"
    assert main(["fingerprint-source", "--source", str(media_dir), "--output", uri]) == 0
    assert json.loads(storage.read_bytes(uri))["files"] == len(list(media_dir.iterdir()))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_ingest_features_and_transfer_write_to_gcs(dvc_repo, gcs_bucket, tmp_path, monkeypatch, capsys):
    """The stages given the DVC run's inputs write the same outputs to gs:// as they did locally."""
    monkeypatch.chdir(dvc_repo)  # its params.yaml: the small settings; a shorter transfer fit still
    params = yaml.safe_load((dvc_repo / "params.yaml").read_text())
    params["transfer"].update(solver="adam", max_steps=20, eval_every=10, val_folds=2, val_rounds=1)
    quick = tmp_path / "params.yaml"
    quick.write_text(yaml.safe_dump(params))
    out = f"{gcs_bucket('outputs')}/run"
    root = str(dvc_repo.parent / "root")
    source = json.loads((dvc_repo / "results" / "source.json").read_text())["source"]
    assert main(["ingest", "--source", source, "--output", f"{out}/ingest", "--data-root", root]) == 0
    assert main(["features", "--clips", "data/clips", "--labels", "data/labels", "--output", f"{out}/features",
                 "--data-root", root]) == 0
    assert main(["--params", str(quick), "transfer", "--benchmark", "esc50", "--checkpoint", "data/model",
                 "--output", f"{out}/transfer"]) == 0
    for stage, local, table in [("ingest", "data/ingest", "videos.parquet"),
                                ("features", "data/features", "index.parquet")]:
        assert storage.output_complete(f"{out}/{stage}")
        assert set(_objects(f"{out}/{stage}")) - {storage.COMPLETE_MARKER} == {
            p.relative_to(local).as_posix() for p in Path(local).rglob("*") if p.is_file()}
        assert storage.read_parquet(f"{out}/{stage}/{table}").equals(pd.read_parquet(Path(local) / table))
    assert storage.output_complete(f"{out}/transfer")
    remote = json.loads(storage.read_bytes(f"{out}/transfer/metrics.json"))
    local = json.loads((dvc_repo / "results" / "transfer" / "esc50" / "metrics.json").read_text())
    assert remote["benchmark"] == "esc50" and remote["checkpoint"] == local["checkpoint"]
    assert [r["model"] for r in remote["rows"]] == [r["model"] for r in local["rows"]]
    assert set(_objects(f"{out}/transfer")) - {storage.COMPLETE_MARKER} == {
        p.name for p in (dvc_repo / "results" / "transfer" / "esc50").iterdir()}
    assert not Path("gs:").exists()
