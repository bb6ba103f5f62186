"""The one DAG on both engines: kfp.local end to end, and compiled IR loaded back."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
import yaml
from kfp import compiler, components

from mmvideos.cli import main
from mmvideos.config import load_params
from mmvideos.local_run import run_local, summarise
from mmvideos.pipelines.mmvideos_pipeline import build_pipeline

STAGES = {"ingest", "clip-shard", "gather-clips", "annotate-visual", "annotate-audio", "merge-labels",
          "label-drift", "extract-features", "pretrain", "transfer", "report"}


def small_params(tmp_path):
    """params.yaml with a quicker pretraining and transfer (same code paths)."""
    params = load_params()
    params["pretrain"].update(epochs=2, width_mult=0.125, batch_size=2)
    params["transfer"].update(epochs=5)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.mark.slow
def test_pipeline_runs_on_kfp_local(media_dir, tmp_path):
    shown = io.StringIO()
    params = small_params(tmp_path)
    outputs = run_local(str(media_dir), tmp_path / "work", params, echo=shown)
    clips = pd.read_parquet(outputs["clips"] / "clips.parquet")
    rejects = pd.read_parquet(outputs["videos"] / "rejects.parquet")
    assert len(clips) == 3 and len(rejects) == 6
    text = summarise(outputs, 1.0)
    assert "8 found, 2 kept, 6 rejected" in text and "3 clips" in text
    assert "labels   13.0 per clip" in text or "labels   1" in text
    assert "pretrain vggish_fc x0.125 on" in text
    table = (outputs["results"] / "results.csv").read_text()
    assert "vggish_fc pretrained" in table and "log-mel stats" in table
    model_meta = (outputs["model"] / "model.json").read_text()
    assert '"arch": "vggish_fc"' in model_meta.replace("'", '"')
    assert "Task 'ingest' finished with status SUCCESS" in shown.getvalue()
    assert "Wrote executor output" in (tmp_path / "work" / "run.log").read_text()
    report = (outputs["videos"].parent / "report").read_text()
    assert "no audio stream" in report  # the Markdown artifact shows the rejects table
    # a second run hits the local cache: same artifacts, nothing recomputed
    assert run_local(str(media_dir), tmp_path / "work", params) == outputs
    assert (tmp_path / "work" / "latest" / "clips").resolve() == outputs["clips"]


def test_compiled_ir_loads_back_with_one_component_per_stage(tmp_path):
    target = tmp_path / "pipeline.yaml"
    assert main(["compile", "--output", str(target)]) == 0
    loaded = components.load_component_from_file(str(target))
    assert loaded.name == "mmvideos"
    spec, platform = yaml.safe_load_all(target.read_text())
    executors = {name.removeprefix("exec-") for name in spec["deploymentSpec"]["executors"]}
    assert STAGES <= executors
    # pretraining lands on the GPU node pool: accelerator request, node selector, toleration
    resources = spec["deploymentSpec"]["executors"]["exec-pretrain"]["container"]["resources"]
    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
    gpu_pod = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-pretrain"]
    assert gpu_pod["nodeSelector"]["labels"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-a100"}
    assert gpu_pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["clip_params"]["defaultValue"]["sample_rate"] == 16000
    assert set(params) >= {"source", "ingest_params", "clip_params"}


def test_params_yaml_is_the_single_source_of_defaults(tmp_path):
    custom = load_params()
    custom["clip"]["fps"] = 5
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(custom))
    target = tmp_path / "p.yaml"
    compiler.Compiler().compile(build_pipeline(load_params(tmp_path / "params.yaml")), str(target))
    spec = next(yaml.safe_load_all(target.read_text()))
    assert spec["root"]["inputDefinitions"]["parameters"]["clip_params"]["defaultValue"]["fps"] == 5


def test_cli_stage_commands_match_the_functions(media_dir, tmp_path, capsys):
    assert main(["ingest", "--source", str(media_dir), "--output", str(tmp_path / "i")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["videos_kept"] == 2
    assert main(["clip", "--videos", str(tmp_path / "i"), "--output", str(tmp_path / "c")]) == 0
    assert json.loads(capsys.readouterr().out)["clips"] == 3


def test_cli_reports_a_missing_source_plainly(tmp_path, capsys):
    assert main(["ingest", "--source", str(tmp_path / "nope"), "--output", str(tmp_path / "o")]) == 2
    assert "neither a folder" in capsys.readouterr().err
