"""A newcomer's common mistakes: each ends in one line naming the setting or file and what to do,
with the conventional exit status (2 usage, 1 runtime failure, 130 interrupted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from media_fixtures import write_media
from mmvideos.cli import main

MMVIDEOS = [sys.executable, "-m", "mmvideos.cli"]
REPO_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def _params(tmp_path: Path, section: str, **values) -> Path:
    params = yaml.safe_load(REPO_PARAMS.read_text())
    params[section] = {**(params.get(section) or {}), **values}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _error_line(capsys) -> str:
    """The last line on stderr (a stage's progress lines come before it)."""
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_bare_mmvideos_prints_the_commands(capsys):
    assert main([]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith("usage: mmvideos") and "run " in shown and "embed" in shown


def test_a_global_option_after_the_command_says_where_it_goes(tmp_path, capsys):
    assert main(["run", "--params", str(tmp_path / "p.yaml")]) == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --params" in err
    assert "--params is a global option: it goes before the command, e.g. mmvideos --params FILE run" in err


@pytest.mark.parametrize(("section", "values", "named"), [
    ("annotate_audio", {"device": "gpu"}, "annotate_audio: device must be cpu, cuda or cuda:N"),
    ("annotate_visual", {"device": "cuda:x"}, "annotate_visual: device must be cpu, cuda or cuda:N"),
    ("annotate_visual", {"model": "resnet"}, "model 'resnet': unknown visual annotator; use one of "
                                             "efficientnet-lite0, torchscript"),
    ("annotate_audio", {"runtime": "tensorrt"}, "annotate_audio: runtime must be auto, torch or onnx"),
    ("benchmarks", {"esc-50": "/data/ESC-50"}, "unknown benchmark 'esc-50': the benchmarks are esc50, tut2018, "
                                               "audioset"),
    ("pretrain", {"device": "gpu"}, "device must be auto, cuda or cpu, got 'gpu'"),
    ("transfer", {"device": "gpu"}, "transfer.device must be auto, cpu, cuda or cuda:N, got 'gpu'"),
    ("features", {"device": "gpu"}, "features: device must be 'auto', 'cpu' or 'cuda[:N]', got 'gpu'"),
])
def test_an_enumerated_setting_lists_its_values_before_any_work(tmp_path, capsys, section, values, named):
    params = _params(tmp_path, section, **values)
    assert main(["--params", str(params), "run", "--workdir", str(tmp_path / "work"),
                 "--data-root", str(tmp_path / "root")]) == 2
    line = _error_line(capsys)
    assert line.startswith(f"mmvideos run: error: {params}: ") and named in line
    assert not (tmp_path / "work").exists()  # refused before anything ran


def test_an_unknown_benchmark_on_the_command_line_lists_the_known_ones(tmp_path, capsys):
    assert main(["transfer", "--benchmark", "esc-50", "--checkpoint", str(tmp_path), "--output", str(tmp_path)]) == 2
    assert "invalid choice: 'esc-50' (choose from 'esc50', 'tut2018', 'audioset')" in capsys.readouterr().err


def test_a_folder_without_a_usable_video_ends_with_the_accounting(tmp_path):
    """The whole pipeline on one silent video: the run stops after ingest with why, exit status 1
    (the inputs are wrong, not the command line), instead of a KeyError from a later task."""
    source = tmp_path / "videos"
    source.mkdir()
    write_media(source / "silent.mp4", 5.0)
    done = subprocess.run([*MMVIDEOS, "--params", str(REPO_PARAMS), "run", "--source", str(source), "--workdir",
                           str(tmp_path / "work"), "--data-root", str(tmp_path / "root")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 1, done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("mmvideos run: error: 0 of 1 videos kept: silent.mp4: no audio stream (picture only). ")
    assert "KeyError" not in done.stderr and "rejects.parquet" in line and "--source" in line


def test_the_ingest_stage_alone_gives_the_same_accounting(tmp_path, capsys):
    source = tmp_path / "videos"
    source.mkdir()
    write_media(source / "silent.mp4", 5.0)
    (source / "notes.mp4").write_bytes(b"not a video")
    assert main(["ingest", "--source", str(source), "--output", str(tmp_path / "i"),
                 "--data-root", str(tmp_path / "root")]) == 1
    line = _error_line(capsys)
    assert "0 of 2 videos kept: notes.mp4: " in line and "; silent.mp4: no audio stream (picture only)" in line
    assert (tmp_path / "i" / "rejects.parquet").exists()  # the tables are written before the verdict


def test_an_interrupted_command_exits_130(monkeypatch, capsys):
    import mmvideos.models

    def interrupted(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(mmvideos.models, "model_table", interrupted)
    assert main(["models"]) == 130
    assert _error_line(capsys) == "mmvideos models: interrupted"
