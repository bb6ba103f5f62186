"""`dvc repro` runs the stages through the same CLI, from params.yaml, and is idempotent; a video
added to the source makes ingest out of date."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _dvc(*args: str, cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.slow
def test_dvc_repro_runs_the_stages_and_skips_unchanged_ones(media_dir, tmp_path):
    shutil.copy(REPO / "dvc.yaml", tmp_path)
    source = shutil.copytree(media_dir, tmp_path / "videos")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["source"] = str(source)
    params["pretrain"].update(epochs=2, width_mult=0.125, batch_size=2)
    params["transfer"].update(max_steps=200, val_rounds=1)
    params["data"]["root"] = str(tmp_path / "root")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    _dvc("init", "--no-scm", "-q", cwd=tmp_path)
    _dvc("repro", cwd=tmp_path)
    clips = pd.read_parquet(tmp_path / "data" / "clips" / "clips.parquet")
    assert len(clips) == 3
    labels = pd.read_parquet(tmp_path / "data" / "labels" / "labels.parquet")
    assert set(labels["clip_id"]) == set(clips["clip_id"])
    assert "esc50.vggish_fc.pretrained.top1" in (tmp_path / "data" / "report" / "metrics.json").read_text()
    assert len(list((tmp_path / "root" / "clip").rglob("audio.tar"))) == 2  # bulk data in the data root
    assert not list((tmp_path / "data").rglob("*.tar"))  # the DVC outs are manifests and tables
    # only the source listing, which runs on every repro, is ever out of date
    assert _dvc("status", cwd=tmp_path).split() == ["fingerprint_source:", "always", "changed"]
    assert "esc50.vggish_fc.pretrained.top1" in _dvc("metrics", "show", cwd=tmp_path)
    # an edit of one transfer setting re-runs transfer and report only
    params["transfer"]["lr"] = 3.0e-4
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = _dvc("repro", cwd=tmp_path)
    assert "Stage 'ingest' didn't change" in out and "Stage 'pretrain' didn't change" in out
    assert "Running stage 'transfer@esc50'" in out and "Running stage 'report'" in out
    assert "Running stage 'fingerprint_source'" in out  # listed again, unchanged: ingest skipped
    # a video added to the source: the listing changes and ingest is out of date
    shutil.copy(source / "good_speech.mp4", source / "added.mp4")
    _dvc("repro", "fingerprint_source", cwd=tmp_path)
    status = _dvc("status", cwd=tmp_path)
    assert "ingest:" in status and re.search(r"modified:\s+data/source\.json", status)
    assert "clip:" not in status  # clip waits for ingest's new output
