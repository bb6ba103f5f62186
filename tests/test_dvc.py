"""`dvc repro` runs the stages through the same CLI, from params.yaml, and is idempotent; results
are shared the way a reviewer gets them: `dvc push` to a GCS remote (the real emulator), a
second clone `dvc pull`s and shows the same metrics with nothing to recompute; an edit of a
stage's code, of one setting or of the source makes just the stages concerned out of date."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mmvideos.tooling import dvc_deps
from repro_fixtures import REPO, dvc, git


def _stages(status: str) -> set[str]:
    """The stage names `dvc status` reports (a foreach stage's `transfer@esc50` as `transfer`)."""
    return {line[:-1].split("@")[0] for line in status.splitlines()
            if line and not line[0].isspace() and line.endswith(":")}


def _clone(dvc_repo, tmp_path, remote):
    clone = tmp_path / "clone"
    git("clone", "-q", str(dvc_repo), str(clone), cwd=tmp_path)
    dvc("remote", "modify", "--local", "gcs", "url", remote, cwd=clone)
    return clone


def test_every_stage_lists_its_code():
    """dvc.yaml's code deps are the import closure of each stage's module (`make lock` refreshes them)."""
    assert dvc_deps.update(REPO / "dvc.yaml", write=False) == []
    deps = dvc_deps.stage_code_deps("clip")
    assert "src/mmvideos/stages/clip.py" in deps and "src/mmvideos/stages/ingest.py" in deps  # clip reads ingest's table
    assert "src/mmvideos/stages/clip.py" not in dvc_deps.stage_code_deps("report")
    assert "src/mmvideos/__init__.py" not in deps and "src/mmvideos/cli.py" not in deps


def test_a_later_stage_s_code_does_not_rerun_an_earlier_stage():
    """The whole-file validation (mmvideos.settings) imports every stage's settings class; it is
    not a stage's code, so pretraining does not depend on the transfer classifier through it."""
    pretrain = dvc_deps.stage_code_deps("pretrain")
    assert "src/mmvideos/stages/pretrain.py" in pretrain and "src/mmvideos/config.py" in pretrain
    assert "src/mmvideos/evaluation/fit.py" not in pretrain and "src/mmvideos/settings.py" not in pretrain


def test_code_deps_rewrite_keeps_data_deps_and_comments(tmp_path):
    target = tmp_path / "dvc.yaml"
    text = (REPO / "dvc.yaml").read_text().replace("      - src/mmvideos/stages/clip.py\n", "", 1)
    target.write_text(text)
    assert "clip" in dvc_deps.update(target, write=False)
    assert subprocess.run([sys.executable, "-m", "mmvideos.tooling.dvc_deps", "--check", "--dvc-yaml", str(target)],
                          capture_output=True).returncode == 1
    assert set(dvc_deps.update(target, write=True)) >= {"clip"}
    assert target.read_text() == (REPO / "dvc.yaml").read_text()


def test_the_default_remote_is_on_gcs():
    out = subprocess.run([sys.executable, "-m", "dvc", "remote", "list", "--project"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    assert re.search(r"^gcs\s+gs://\S+\s+\(default\)", out, re.M), out


@pytest.mark.slow
def test_repro_results_are_in_git_and_the_rest_in_the_cache(dvc_repo):
    clips = pd.read_parquet(dvc_repo / "data" / "clips" / "clips.parquet")
    assert len(clips) == 3
    labels = pd.read_parquet(dvc_repo / "data" / "labels" / "labels.parquet")
    assert set(labels["clip_id"]) == set(clips["clip_id"])
    assert len(list((dvc_repo.parent / "root" / "clip").rglob("audio.tar"))) == 2  # bulk data in the data root
    assert not list((dvc_repo / "data").rglob("*.tar"))  # the DVC outs are manifests and tables
    tracked = set(git("ls-files", cwd=dvc_repo).split())
    assert {"dvc.lock", "results/report/metrics.json", "results/labels/summary.json", "results/drift/metrics.json",
            "results/pretrain/summary.json", "results/pretrain/metrics.json", "results/transfer/esc50/metrics.json",
            "results/source.json"} <= tracked
    assert not any(name.startswith("data/") for name in tracked)
    lock = yaml.safe_load((dvc_repo / "dvc.lock").read_text())
    assert any(d["path"] == "src/mmvideos/stages/clip.py" for d in lock["stages"]["clip"]["deps"])
    # only the source listing, which runs on every repro, is ever out of date
    assert dvc("status", cwd=dvc_repo).split() == ["fingerprint_source:", "always", "changed"]
    assert "esc50.vggish_fc.pretrained.top1" in dvc("metrics", "show", cwd=dvc_repo)


@pytest.mark.slow
def test_a_second_clone_pulls_and_shows_the_same_metrics(dvc_repo, gcs_bucket, tmp_path):
    clone = _clone(dvc_repo, tmp_path, f"{gcs_bucket('dvc-remote')}/cache")
    # the results come with git: metrics show works before any pull
    assert dvc("metrics", "show", cwd=clone) == dvc("metrics", "show", cwd=dvc_repo)
    assert "fetched" in dvc("pull", cwd=clone)
    assert pd.read_parquet(clone / "data" / "labels" / "labels.parquet").equals(
        pd.read_parquet(dvc_repo / "data" / "labels" / "labels.parquet"))
    assert (clone / "data" / "model" / "model.safetensors").read_bytes() == \
        (dvc_repo / "data" / "model" / "model.safetensors").read_bytes()
    assert dvc("status", cwd=clone).split() == ["fingerprint_source:", "always", "changed"]
    metrics = json.loads(dvc("metrics", "show", "--json", cwd=clone))
    assert metrics == json.loads(dvc("metrics", "show", "--json", cwd=dvc_repo))
    assert metrics[""]["data"]["results/report/metrics.json"]["data"]["esc50.vggish_fc.pretrained.top1"] >= 0

    # an edit of clip.py: clip and the stages whose code imports it are out of date, not ingest
    with open(clone / "src" / "mmvideos" / "stages" / "clip.py", "a") as fh:
        fh.write("\n# an edit\n")
    stages = _stages(dvc("status", cwd=clone))
    importers = {s for s in dvc_deps.STAGE_MODULES if "src/mmvideos/stages/clip.py" in dvc_deps.stage_code_deps(s)}
    assert stages - {"fingerprint_source"} == importers
    assert {"clip", "annotate_visual", "annotate_audio", "merge_labels", "features"} <= stages
    assert not stages & {"ingest", "report", "label_drift"}
    # an edit of report.py: report alone
    clip_py = Path("src", "mmvideos", "stages", "clip.py")
    (clone / clip_py).write_text((REPO / clip_py).read_text())
    with open(clone / "src" / "mmvideos" / "stages" / "report.py", "a") as fh:
        fh.write("\n# an edit\n")
    assert _stages(dvc("status", cwd=clone)) == {"fingerprint_source", "report"}


@pytest.mark.slow
def test_a_setting_or_a_new_video_reruns_only_what_it_concerns(dvc_repo, gcs_bucket, tmp_path):
    clone = _clone(dvc_repo, tmp_path, f"{gcs_bucket('dvc-remote')}/cache")
    dvc("pull", cwd=clone)
    params = yaml.safe_load((clone / "params.yaml").read_text())
    params["label_drift"]["top_labels"] = 5
    (clone / "params.yaml").write_text(yaml.safe_dump(params))
    out = dvc("repro", cwd=clone)
    assert "Stage 'ingest' didn't change" in out and "Stage 'pretrain' didn't change" in out
    assert "Stage 'transfer@esc50' didn't change" in out and "Running stage 'label_drift'" in out
    assert "Running stage 'fingerprint_source'" in out  # listed again, unchanged: ingest skipped
    # `dvc metrics diff` against the committed run: the drift headline, if anything, changed
    diff = dvc("metrics", "diff", "--all", cwd=clone)
    assert "results/drift/metrics.json" in diff and "results/report/metrics.json" in diff
    # a video added to the source: the listing changes and ingest is out of date
    source = params["data"]["source"]
    videos = tmp_path / "videos"
    shutil.copytree(source, videos)
    shutil.copy(videos / "good_speech.mp4", videos / "added.mp4")
    params["data"]["source"] = str(videos)
    (clone / "params.yaml").write_text(yaml.safe_dump(params))
    dvc("repro", "fingerprint_source", cwd=clone)
    status = dvc("status", cwd=clone)
    assert "ingest:" in status and re.search(r"modified:\s+results/source\.json", status)
    assert "clip:" not in status  # clip waits for ingest's new output


def test_gc_keeps_every_unit_dvc_made(dvc_repo):
    """Before: dvc.yaml's clip, annotate-* and features recorded no manifest, so gc deleted their units."""
    from mmvideos.data.dataroot import collect_garbage

    found = collect_garbage(dvc_repo.parent / "root", keep_runs=1, min_age_s=0)
    assert found.units == 0 and found.kept_units > 0, found.files[:5]


@pytest.mark.slow
def test_forced_stages_that_compute_nothing_new_leave_dvc_lock_and_results_as_they_were(dvc_repo, gcs_bucket, tmp_path):
    """What DVC tracks depends only on inputs, settings and code: forcing the data stages again
    (their units are all in the shared data root, the finished checkpoint too) rewrites every
    tracked output with the same bytes; timings and reuse counts go to the untracked run.json."""
    clone = _clone(dvc_repo, tmp_path, f"{gcs_bucket('dvc-remote')}/cache")
    dvc("pull", cwd=clone)
    lock = (clone / "dvc.lock").read_bytes()
    for stage in ("ingest", "clip", "annotate_visual", "annotate_audio", "merge_labels", "features", "pretrain",
                  "transfer@esc50", "report", "label_drift"):  # (evidently's page numbers its random element ids)
        dvc("repro", "-f", "-s", stage, cwd=clone)
        assert (clone / "dvc.lock").read_bytes() == lock, stage
    assert git("status", "--porcelain", cwd=clone) == ""  # results/ (in git) byte-identical too
    run = json.loads((clone / "data" / "clips" / "run.json").read_text())
    assert run["shards_reused"] == 2 and run["shards_computed"] == 0
    assert "shards_reused" not in json.loads((clone / "data" / "clips" / "summary.json").read_text())
    assert _stages(dvc("status", cwd=clone)) == {"fingerprint_source"}
    # `dvc plots show` offline: the curves are a static image, no plotting library from a CDN
    dvc("plots", "show", "-o", str(tmp_path / "plots"), cwd=clone)
    page = (tmp_path / "plots" / "index.html").read_text()
    assert "<img" in page and "curves.png" in page and "<script" not in page
