"""A clone on another path, with its own empty data root, after `dvc pull` runs an experiment to the
end: the pulled manifests name units relative to the data root, so nothing is read from the first
clone's path (deleted before the second runs), and the units the second root lacks are made again
by the stages that own them."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from repro_fixtures import dvc, git, make_repo


@pytest.mark.slow
def test_a_clone_elsewhere_with_its_own_data_root_runs_an_experiment_to_the_end(media_dir, gcs_bucket, tmp_path):
    remote = f"{gcs_bucket('dvc-portable')}/cache"
    source = shutil.copytree(media_dir, tmp_path / "videos")
    first = make_repo(tmp_path / "first" / "repo", source, remote, root="data/root")
    dvc("repro", cwd=first)
    dvc("push", cwd=first)
    git("add", "-A", cwd=first)
    git("commit", "-q", "-m", "demo run", cwd=first)
    assert (first / "data" / "root" / "clip").is_dir()  # the data root is inside the clone

    second = tmp_path / "elsewhere" / "deeper" / "repo"
    git("clone", "-q", str(first), str(second), cwd=tmp_path)
    dvc("remote", "modify", "--local", "gcs", "url", remote, cwd=second)
    shutil.rmtree(tmp_path / "first")  # nothing of the first clone, its data root included, is left
    dvc("pull", cwd=second)
    for folder in ("clips", "visual", "audio", "features"):
        manifest = pd.read_parquet(second / "data" / folder / "manifest.parquet")
        assert not manifest["uri"].str.contains("first").any() and not manifest["uri"].str.startswith("/").any()
    assert not (second / "data" / "root").exists()

    out = dvc("exp", "run", "-S", "annotate_audio.threshold=0.05", cwd=second)
    assert "Running stage 'annotate_audio'" in out, out
    assert "Stage 'clip' didn't change" in out and "Stage 'annotate_visual' didn't change" in out, out
    # the clip units the audio annotator reads were cut again into this clone's own root
    assert len(list((second / "data" / "root" / "clip").rglob("audio.tar"))) == 2
    # to the end: nothing is left to run but the source listing, which runs every time
    status = dvc("status", cwd=second)
    assert [line for line in status.splitlines() if line and not line[0].isspace()] == ["fingerprint_source:"], status
    # the stages after it read this root too: features makes its units here, pretraining reads them
    dvc("repro", "-f", "-s", "features", cwd=second)
    dvc("repro", "-f", "-s", "pretrain", cwd=second)
    assert len(list((second / "data" / "root" / "features").rglob("features.tar"))) == 2
    assert not (tmp_path / "first").exists()
