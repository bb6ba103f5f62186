"""The one DAG on both engines: kfp.local end to end, and compiled IR loaded back."""

from __future__ import annotations

import io
import json
import shutil

import pandas as pd
import pytest
import yaml
from kfp import compiler, components

from mmvideos.cli import main
from mmvideos.config import check_compiled, load_params
from mmvideos.local_run import run_local, summarise
from mmvideos.pipelines.mmvideos_pipeline import build_pipeline

from media_fixtures import tone, write_media

STAGES = {"fingerprint-source", "ingest", "clip-shard", "gather-clips", "annotate-visual", "annotate-audio", "merge-labels",
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
    labels = pd.read_parquet(outputs["labels"] / "labels.parquet")
    per_clip = (labels["visual_labels"].map(len) + labels["audio_labels"].map(len)).mean()
    assert f"labels   {per_clip:.1f} per clip" in text and per_clip >= 10  # top-10 visual + audio
    assert "pretrain vggish_fc x0.125 on" in text
    table = (outputs["results"] / "results.csv").read_text()
    assert "vggish_fc pretrained" in table and "log-mel stats" in table
    model_meta = (outputs["model"] / "model.json").read_text()
    assert '"arch": "vggish_fc"' in model_meta.replace("'", '"')
    assert "Task 'ingest' finished with status SUCCESS" in shown.getvalue()
    assert "Wrote executor output" in (tmp_path / "work" / "run.log").read_text()
    report = (outputs["videos"].parent / "report").read_text()
    assert "no audio stream" in report  # the Markdown artifact shows the rejects table
    kept = pd.read_parquet(outputs["videos"] / "videos.parquet")
    assert all((outputs["videos"] / name).is_file() for name in kept["media"])  # clip read these copies
    # a second run hits the local cache: same artifacts, nothing recomputed but the source listing
    rerun = io.StringIO()
    assert run_local(str(media_dir), tmp_path / "work", params, echo=rerun) == outputs
    assert "Executing task 'fingerprint-source'" in rerun.getvalue()
    assert "Executing task 'ingest'" not in rerun.getvalue()
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
    # the source listing is never cached and feeds ingest's cache key; the other tasks cache
    tasks = spec["root"]["dag"]["tasks"]
    assert not tasks["fingerprint-source"]["cachingOptions"].get("enableCache", False)
    assert tasks["ingest"]["cachingOptions"]["enableCache"] is True
    assert tasks["ingest"]["inputs"]["parameters"]["source_fingerprint"]["taskOutputParameter"] == {
        "producerTask": "fingerprint-source", "outputParameterKey": "Output"}
    # the fan-outs tell their tasks how many there are, to refuse a run-time override
    clip_loop = next(c for c in spec["components"].values()
                     if "clip-shard" in c.get("dag", {}).get("tasks", {}))["dag"]["tasks"]["clip-shard"]
    assert clip_loop["inputs"]["parameters"]["compiled_num_shards"]["runtimeValue"]["constant"] == 1


def test_the_paper_pretrain_preset_compiles(tmp_path):
    """`pretrain: *paper` has batch_size null: the parameter default leaves it out, so the
    dataclass default (1,024, or 2,048 for MobileNetV2) applies."""
    params = load_params()
    params["pretrain"] = params["pretrain_paper"]
    assert params["pretrain"]["batch_size"] is None
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert main(["--params", str(tmp_path / "params.yaml"), "compile", "--output", str(tmp_path / "p.yaml")]) == 0
    spec = next(yaml.safe_load_all((tmp_path / "p.yaml").read_text()))
    default = spec["root"]["inputDefinitions"]["parameters"]["pretrain_params"]["defaultValue"]
    assert default["epochs"] == 30 and default["width_mult"] == 1.0 and "batch_size" not in default


def test_a_benchmark_without_a_root_keeps_its_task_and_its_default_data(tmp_path):
    params = load_params()
    params["benchmarks"] = {"esc50": None}  # `esc50:` with nothing after it: the demo benchmark
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert main(["--params", str(tmp_path / "params.yaml"), "compile", "--output", str(tmp_path / "p.yaml")]) == 0
    spec = next(yaml.safe_load_all((tmp_path / "p.yaml").read_text()))
    assert spec["root"]["inputDefinitions"]["parameters"]["benchmarks"]["defaultValue"] == {"esc50": ""}


def test_a_mistyped_params_file_is_an_error(tmp_path, capsys):
    assert main(["--params", str(tmp_path / "parms.yaml"), "compile", "--output", str(tmp_path / "p.yaml")]) == 2
    assert "parms.yaml' not found" in capsys.readouterr().err
    assert not (tmp_path / "p.yaml").exists()
    assert load_params() == load_params("params.yaml")  # unnamed: ./params.yaml (or the packaged copy)
    with pytest.raises(FileNotFoundError):  # named, even by the default's own name: it must exist
        load_params(tmp_path / "params.yaml")


def test_a_fan_out_differing_from_the_compiled_one_is_refused():
    check_compiled("clip.num_shards", 4, 4)
    with pytest.raises(ValueError, match="clip.num_shards is 8 in this run but 4 in the compiled pipeline: "
                                         "clip.num_shards is fixed when the pipeline is compiled, recompile"):
        check_compiled("clip.num_shards", 8, 4)


@pytest.mark.slow
def test_a_scheduled_rerun_ingests_again_only_when_the_source_changed(media_dir, tmp_path):
    """Each run fails fast at the clip step (a run-time clip.num_shards the compiled DAG does not
    have), after the source listing and ingest: enough to see what the cache does with them."""
    source = tmp_path / "videos"
    source.mkdir()
    shutil.copy(media_dir / "good_speech.mp4", source)
    work, params = tmp_path / "work", small_params(tmp_path)
    arguments = {"clip_params": {**load_params(params)["clip"], "num_shards": 2}}

    def ingest_outputs() -> list:
        return sorted(work.glob("outputs/*/ingest/videos/videos.parquet"))

    for _ in range(2):  # the second run finds the source unchanged: ingest is a cache hit
        with pytest.raises(RuntimeError, match="num_shards is fixed when the pipeline is compiled"):
            run_local(str(source), work, params, arguments=arguments)
        assert len(ingest_outputs()) == 1
    write_media(source / "added.mp4", 4.0, audio=tone(4.0, hz=660.0))
    with pytest.raises(RuntimeError, match="num_shards is fixed"):
        run_local(str(source), work, params, arguments=arguments)
    first, again = ingest_outputs()
    assert len(pd.read_parquet(first)) == 1 and len(pd.read_parquet(again)) == 2


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
