"""params.yaml is checked whole, up front (issue finding 7 and 10), and errors are one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mmvideos.settings import load_params, validate_params

MMVIDEOS = [sys.executable, "-m", "mmvideos.cli"]
REPO_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def _params(**sections) -> dict:
    params = yaml.safe_load(REPO_PARAMS.read_text())
    for name, values in sections.items():
        params[name] = values if values is None else {**params.get(name, {}), **values}
    return {k: v for k, v in params.items() if v is not None}


def _write(tmp_path: Path, params: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_the_repository_params_are_valid():
    load_params(REPO_PARAMS)


def test_checking_the_settings_loads_no_heavy_library():
    """Every command checks the whole params.yaml first: that, and importing any stage's module,
    loads none of the libraries that cost seconds at import (they load where a stage computes)."""
    heavy = ("torch", "onnx", "onnxruntime", "sklearn", "scipy", "matplotlib", "evidently")
    code = ("import sys\n"
            "from mmvideos.settings import load_params\n"
            "load_params(None)\n"
            "import mmvideos.stages.annotate, mmvideos.stages.clip, mmvideos.stages.drift, mmvideos.stages.features\n"
            "import mmvideos.stages.ingest, mmvideos.stages.report, mmvideos.stages.pretrain, mmvideos.stages.transfer\n"
            f"print(sorted(set(sys.modules) & set({heavy!r})))")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "[]"


@pytest.mark.parametrize(("change", "message"), [
    ({"ingestt": {"min_duration_s": 3.0}}, "ingestt: unknown section"),
    ({"clip": {"fsp": 3}}, "clip.fsp: unknown setting"),
    ({"pretrain": {"bf16": "no"}}, "pretrain.bf16: input should be a valid boolean, got 'no'"),
    ({"pretrain": {"lr": "1e-4"}}, "YAML reads 1e-4 as text"),
    ({"pretrain": {"epochs": 0}}, "epochs, val_every, num_nodes, seeds and batch_size must be positive"),
    ({"clip": {"fps": "3"}}, "clip.fps: input should be a valid integer"),
    ({"data": {"slots": 0}}, "data.slots: input should be greater than or equal to 1"),
    ({"ingest": {"min_duration_s": 2.0}}, "ingest.min_duration_s (2) is below clip.min_s (3)"),
    ({"ingest": {"max_duration_s": 1.0}}, "min_duration_s <= max_duration_s"),
])
def test_bad_settings_are_named(change, message):
    params = yaml.safe_load(REPO_PARAMS.read_text())
    for name, values in change.items():
        params[name] = {**params.get(name, {}), **values}
    with pytest.raises(ValueError) as caught:
        validate_params(params)
    assert message in str(caught.value)


def test_yaml_booleans_pass_and_quoted_words_do_not(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("pretrain:\n  bf16: no\n")  # YAML's false
    assert load_params(path)["pretrain"]["bf16"] is False
    path.write_text('pretrain:\n  bf16: "no"\n')
    with pytest.raises(ValueError, match="bf16"):
        load_params(path)


def test_a_bad_setting_fails_a_stage_before_any_work(media_dir, tmp_path):
    """A typo in the pretrain section stops ingest at once: not hours later, at pretraining."""
    params = _write(tmp_path, _params(pretrain={"lrr": 1.0e-3}))
    done = subprocess.run([*MMVIDEOS, "--params", str(params), "ingest", "--source", str(media_dir),
                           "--output", str(tmp_path / "out"), "--data-root", str(tmp_path / "root")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"mmvideos ingest: error: {params}: pretrain.lrr: unknown setting (run with -v for the traceback)"]
    assert not (tmp_path / "root").exists() and not (tmp_path / "out").exists()  # nothing was probed


def test_errors_are_one_line_and_the_traceback_comes_with_v(tmp_path):
    args = ["transfer", "--benchmark", "esc50", "--checkpoint", str(tmp_path / "none"), "--output", str(tmp_path / "o"),
            "--data", str(tmp_path / "no-benchmark")]
    quiet = subprocess.run([*MMVIDEOS, *args], capture_output=True, text=True, cwd=tmp_path)
    loud = subprocess.run([*MMVIDEOS, "-v", *args], capture_output=True, text=True, cwd=tmp_path)
    assert quiet.returncode == loud.returncode == 2
    (line,) = quiet.stderr.strip().splitlines()
    assert line.startswith("mmvideos transfer: error: ") and "Traceback" not in quiet.stderr
    assert "Traceback (most recent call last)" in loud.stderr


def test_a_second_run_on_a_locked_workdir_is_refused(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; h = open(sys.argv[1], 'a+'); "
                               "fcntl.flock(h, fcntl.LOCK_EX); h.write('4242'); h.flush(); print('held', flush=True); "
                               "time.sleep(120)", str(work / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        done = subprocess.run([*MMVIDEOS, "--params", str(REPO_PARAMS), "run", "--workdir", str(work),
                               "--data-root", str(tmp_path / "root")], capture_output=True, text=True, cwd=tmp_path,
                              env={**os.environ}, timeout=300)
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 1  # a runtime condition, not a wrong command line
    assert f"another mmvideos run is using {work} (pid 4242)" in done.stderr
    assert not (work / "latest").exists()


def test_latest_links_are_replaced_atomically(tmp_path):
    from mmvideos.cluster.local_run import _point_latest

    for target in ("a", "b"):
        (tmp_path / target).mkdir()
        _point_latest(tmp_path, {"model": tmp_path / target})
    assert os.readlink(tmp_path / "latest" / "model") == str(tmp_path / "b")
    assert sorted(p.name for p in (tmp_path / "latest").iterdir()) == ["model"]  # no temporary left
