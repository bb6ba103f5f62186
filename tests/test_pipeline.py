"""The one DAG on both engines: kfp.local end to end, and compiled IR loaded back."""

from __future__ import annotations

import io
import json
import re
import shutil
import sys
import threading

import pandas as pd
import pytest
import yaml
from kfp import compiler, components

from media_fixtures import tone, write_media
from mmvideos.data.runrecord import read_summary
from mmvideos.cli import main
from mmvideos.cluster.local_run import _ANSI, _TaskLines, run_local, summarise
from mmvideos.config import check_compiled
from mmvideos.pipelines.mmvideos_pipeline import build_pipeline
from mmvideos.settings import load_params

STAGES = {"list-source", "probe", "gather-ingest", "clip-slot", "gather", "annotate-visual", "annotate-audio",
          "merge-labels", "label-drift", "extract-features", "pretrain", "transfer", "collect", "report"}
#: Bulk data: none of it may pass through an artifact.
BULK = {".tar", ".wav", ".jpg", ".npy", ".mp4", ".pt"}


def small_params(tmp_path, slots: int = 1, models: tuple[str, ...] = ("vggish_fc",)):
    """params.yaml with a quicker pretraining and transfer (same code paths), ``slots`` task slots
    per map and one pretraining task per architecture of ``models``."""
    params = load_params()
    params["pretrain"].update(epochs=2, width_mult=0.125, batch_size=2, models=list(models))
    params["transfer"].update(max_steps=200, val_rounds=1)
    params["data"]["slots"] = slots
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.mark.slow
def test_pipeline_runs_on_kfp_local(media_dir, tmp_path):
    shown = io.StringIO()
    params = small_params(tmp_path, slots=2, models=("vggish", "vggish_fc"))  # a two-model ablation
    root = tmp_path / "root"
    outputs = run_local(str(media_dir), tmp_path / "work", params, echo=shown, data_root=root)
    clips = pd.read_parquet(outputs["clips"] / "clips.parquet")
    rejects = pd.read_parquet(outputs["videos"] / "rejects.parquet")
    assert len(clips) == 3 and len(rejects) == 6
    text = summarise(outputs, 1.0)
    assert "8 found, 2 kept, 6 rejected" in text and "3 clips" in text
    assert "reuse    probe 0 reused, 8 computed; clip 0 reused, 2 computed (3 clips)" in text
    labels = pd.read_parquet(outputs["labels"] / "labels.parquet")
    per_clip = (labels["visual_labels"].map(len) + labels["audio_labels"].map(len)).mean()
    assert f"labels   {per_clip:.1f} per clip" in text and per_clip >= 10  # top-10 visual + audio
    assert "pretrain vggish x0.125 on" in text and "pretrain vggish_fc x0.125 on" in text
    # one table: both models on the demo benchmark, named as what it is, without the paper's ESC-50 column
    table = pd.read_csv(outputs["results"] / "results.csv").set_index("Model")
    assert {"vggish pretrained", "vggish_fc pretrained", "vggish random init", "vggish_fc random init",
            "log-mel stats"} <= set(table.index)
    assert not [c for c in table.columns if "(paper)" in c]
    top1, mean_ap = "demo percussion Top-1", "demo percussion mAP"
    assert table.loc["vggish_fc pretrained", top1] != table.loc["vggish pretrained", top1] or \
        table.loc["vggish_fc pretrained", mean_ap] != table.loc["vggish pretrained", mean_ap]
    assert "demo percussion (8 classes, 52 clips)" in (outputs["results"] / "results.md").read_text()
    for arch in ("vggish", "vggish_fc"):
        model_meta = json.loads((outputs[f"models-{arch}"] / "model.json").read_text())
        assert model_meta["arch"] == arch
    started = re.findall(r"^task \d+ of \d+: (.+)$", shown.getvalue(), re.M)  # display names, as they start
    assert started.count("pretrain") == 2 and started.count("ingest") == 1
    assert started.count("clip") == 2  # one task per slot
    log_text = _ANSI.sub("", (tmp_path / "work" / "run.log").read_text())
    assert "Wrote executor output" in log_text and "Task 'gather-ingest' finished with status SUCCESS" in log_text
    from mmvideos.bench.demo import task_times  # the parser of `mmvideos bench --figures demo`, on this run's log

    timed = task_times((tmp_path / "work" / "run.log").read_text())
    ran = [line.split("'")[0] for line in log_text.split("Executing task '")[1:]]
    assert {name: row["count"] for name, row in timed["tasks"].items()} == {name: ran.count(name) for name in ran}
    assert all(0 <= row["wall_s"] <= row["seconds"] for row in timed["tasks"].values())
    assert sum(row["wall_s"] for row in timed["tasks"].values()) <= timed["last_end"] - timed["first_start"] + 0.01
    report = (outputs["videos"].parent / "report").read_text()
    assert "no audio stream" in report  # the Markdown artifact shows the rejects table
    # artifacts carry manifests and tables, never media or features: those live in the data root
    artifacts = [p for p in (tmp_path / "work" / "outputs").rglob("*") if p.is_file()]
    assert not [p for p in artifacts if p.suffix in BULK]
    per_task: dict[str, int] = {}  # bytes of every artifact of each map or gather task
    for path in artifacts:
        parts = [p for p in path.relative_to(tmp_path / "work" / "outputs").parts[1:] if not p.startswith("for-loop")]
        per_task[parts[0]] = per_task.get(parts[0], 0) + path.stat().st_size
    bulk = sum(p.stat().st_size for p in root.rglob("*.tar"))
    maps = {t: n for t, n in per_task.items() if t.split("-")[0] in {"probe", "clip", "annotate", "extract", "gather"}}
    assert bulk > 500_000 and len(maps) >= 9 and max(maps.values()) < bulk / 5, (bulk, maps)
    assert (root / "pretrain").is_dir()  # the checkpoint is kept in the data root
    # a second run hits the local cache: same artifacts, nothing recomputed but the source listing
    rerun = io.StringIO()
    assert run_local(str(media_dir), tmp_path / "work", params, echo=rerun, data_root=root) == outputs
    assert "task 1 of " in rerun.getvalue() and ": list source\n" in rerun.getvalue()
    assert ": probe\n" not in rerun.getvalue()
    assert (tmp_path / "work" / "latest" / "clips").resolve() == outputs["clips"]
    # without KFP's cache every task runs again, and finds every unit in the data root
    again = run_local(str(media_dir), tmp_path / "again", params, caching=False, data_root=root)
    assert "reuse    probe 8 reused, 0 computed; clip 2 reused, 0 computed (0 clips); annotate visual 2 reused, " \
           "0 computed (0 clips); annotate audio 2 reused, 0 computed (0 clips); features 2 reused, 0 computed " \
           "(0 clips)" in summarise(again, 1.0)


def test_parallel_tasks_printing_at_once_leave_a_whole_log(tmp_path):
    """kfp.local prints the iterations of a ParallelFor from threads into the run's stdout: every
    line reaches the log whole (unlocked, concurrent writes to the one log file corrupted it)."""
    lines_per_task, interval = 2000, sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        with open(tmp_path / "run.log", "a") as log:
            stdout = _TaskLines(log, io.StringIO())

            def task(index: int) -> None:
                for n in range(lines_per_task):
                    stdout.write(f"task {index} line {n} " + "x" * (200 + n * 37 % 9000) + "\n")

            threads = [threading.Thread(target=task, args=(index,)) for index in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        sys.setswitchinterval(interval)
    lines = (tmp_path / "run.log").read_bytes().decode().splitlines()
    assert len(lines) == 4 * lines_per_task
    assert all(line.startswith("task ") and line.endswith("x") for line in lines)


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
    assert params["data_root"]["defaultValue"] == "data/root"
    # the source listing is never cached; the probes loop over its work orders, so they re-run
    # exactly when the listing changed
    tasks = spec["root"]["dag"]["tasks"]
    assert not tasks["list-source"]["cachingOptions"].get("enableCache", False)
    probe_loop = next(t for t in tasks.values() if t.get("parameterIterator"))
    assert probe_loop["parameterIterator"]["items"]["inputParameter"].endswith("list-source-Output")
    # every map stage runs under a ParallelFor; each is followed by a gather of its slots
    loops = {name for c in spec["components"].values() for name in c.get("dag", {}).get("tasks", {})
             if c.get("dag") and name in {"probe", "clip-slot", "annotate-visual", "annotate-audio", "extract-features"}}
    assert loops == {"probe", "clip-slot", "annotate-visual", "annotate-audio", "extract-features"}
    assert {"gather", "gather-2", "gather-3", "gather-4", "gather-ingest"} <= set(tasks)


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
    check_compiled("benchmark names", ["esc50"], ["esc50"])
    with pytest.raises(ValueError, match="benchmark names is .* in this run but .* in the compiled pipeline"):
        check_compiled("benchmark names", ["esc50", "tut2018"], ["esc50"])


@pytest.mark.slow
def test_a_scheduled_rerun_probes_again_only_when_the_source_changed(media_dir, tmp_path):
    """Each run fails fast at the clip step (an unknown clip setting), after the listing, the
    probes and the ingest gather: enough to see what the cache and the data root do with them."""
    source = tmp_path / "videos"
    source.mkdir()
    shutil.copy(media_dir / "good_speech.mp4", source)
    work, params = tmp_path / "work", small_params(tmp_path)
    arguments = {"clip_params": {"no_such_setting": 1}}

    def ingest_outputs() -> list:
        return sorted(work.glob("outputs/*/gather-ingest/videos/videos.parquet"))

    for _ in range(2):  # the second run finds the source unchanged: probes and ingest are cache hits
        with pytest.raises(RuntimeError, match="unknown setting"):
            run_local(str(source), work, params, arguments=arguments, data_root=tmp_path / "root")
        assert len(ingest_outputs()) == 1
    write_media(source / "added.mp4", 4.0, audio=tone(4.0, hz=660.0))
    with pytest.raises(RuntimeError, match="unknown setting"):
        run_local(str(source), work, params, arguments=arguments, data_root=tmp_path / "root")
    first, again = ingest_outputs()
    assert len(pd.read_parquet(first)) == 1 and len(pd.read_parquet(again)) == 2
    summary = read_summary(again.parent)  # reuse counts: the run record beside the summary
    assert (summary["shards_reused"], summary["shards_computed"]) == (1, 1)  # only the new file was probed


def test_params_yaml_is_the_single_source_of_defaults(tmp_path):
    custom = load_params()
    custom["clip"]["fps"] = 5
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(custom))
    target = tmp_path / "p.yaml"
    compiler.Compiler().compile(build_pipeline(load_params(tmp_path / "params.yaml")), str(target))
    spec = next(yaml.safe_load_all(target.read_text()))
    assert spec["root"]["inputDefinitions"]["parameters"]["clip_params"]["defaultValue"]["fps"] == 5


def test_cli_stage_commands_match_the_functions(media_dir, tmp_path, capsys):
    root = ["--data-root", str(tmp_path / "root")]
    assert main(["ingest", "--source", str(media_dir), "--output", str(tmp_path / "i"), *root]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["videos_kept"] == 2
    for slot in range(2):
        assert main(["clip", "--videos", str(tmp_path / "i"), "--output", str(tmp_path / f"c{slot}"), *root,
                     "--slot", str(slot), "--slots", "2"]) == 0
    assert sum(json.loads(part)["clips"] for part in capsys.readouterr().out.split("}\n") if part.strip()
               for part in [part + "}"]) == 3
    assert main(["gather", str(tmp_path / "c0"), str(tmp_path / "c1"), "--stage", "clip", "--output",
                 str(tmp_path / "c"), *root]) == 0
    assert json.loads(capsys.readouterr().out)["clips"] == 3
    assert main(["clip", "--videos", str(tmp_path / "i"), "--output", str(tmp_path / "x"), "--data-root", "gs:/x"]) == 2
    assert "not a gs:// URI" in capsys.readouterr().err


def test_cli_reports_a_missing_source_plainly(tmp_path, capsys):
    assert main(["ingest", "--source", str(tmp_path / "nope"), "--output", str(tmp_path / "o"),
                 "--data-root", str(tmp_path / "root")]) == 2
    assert "neither a folder" in capsys.readouterr().err


def test_several_seeds_keep_one_output_and_one_task_count_each(tmp_path):
    """With pretrain.seeds 2, the run's outputs name each seed's model (they overwrote each other
    under one models-<arch> name), and "task n of m" counts the seeds' pretrain, transfer and
    collect tasks."""
    from mmvideos.cluster.local_run import _task_names, fanned_out

    folders = []
    for seed in (4, 5):
        folder = tmp_path / f"model-{seed}"
        folder.mkdir()
        (folder / "summary.json").write_text(json.dumps({"model": "vggish_fc"}))
        (folder / "model.json").write_text(json.dumps({"arch": "vggish_fc", "seed": seed}))
        folders.append(folder)
    assert fanned_out("models", folders) == {"models-vggish_fc-seed-4": folders[0], "models-vggish_fc-seed-5": folders[1]}
    assert fanned_out("models", folders[:1]) == {"models-vggish_fc": folders[0]}
    params = load_params()
    one = _task_names(build_pipeline(params, on_cluster=False), params)[1]
    params["pretrain"]["seeds"] = 2
    two = _task_names(build_pipeline(params, on_cluster=False), params)[1]
    benchmarks = len(params["benchmarks"])
    assert two - one == len(params["pretrain"]["models"]) * (2 + benchmarks)  # a pretrain, a collect, the transfers
    # each transfer task knows the first seed: a later seed's computes only its pre-trained rows
    params["pretrain"]["seed"] = 7
    compiler.Compiler().compile(build_pipeline(params), str(tmp_path / "pipeline.yaml"))
    ir = next(yaml.safe_load_all((tmp_path / "pipeline.yaml").read_text()))  # then the platform spec
    transfers = [task for component in ir["components"].values() for task in component.get("dag", {}).get("tasks", {}).values()
                 if task["componentRef"]["name"] == "comp-transfer"]
    assert [t["inputs"]["parameters"]["first_seed"]["runtimeValue"]["constant"] for t in transfers] == [7]
