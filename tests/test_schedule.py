"""Recurring runs take KFP's six-field cron; a five-field one is refused with a hint."""

import os
import subprocess
import sys

import pandas as pd
import pytest

from mmvideos.cli import main
from mmvideos.cluster.schedule import check_cron


def test_six_field_cron_is_accepted():
    assert check_cron("0 0 3 * * 0") == "0 0 3 * * 0"
    assert check_cron(" 0  */30 * * * MON-FRI ") == "0 */30 * * * MON-FRI"


def test_five_field_cron_is_refused_with_a_hint():
    with pytest.raises(ValueError, match="leading seconds field"):
        check_cron("0 3 * * 0")


def test_garbage_is_refused():
    with pytest.raises(ValueError, match="day of week"):
        check_cron("0 0 3 * * sunday;rm")


def test_cli_refuses_a_bad_cron_before_contacting_the_cluster(capsys):
    assert main(["schedule", "--host", "http://127.0.0.1:9", "--cron", "0 3 * * 0"]) == 2
    assert "KFP needs 6" in capsys.readouterr().err


# --- submit and schedule against a loopback KFP v2beta1 API (tests/kfp_api.py) ---------------

from kfp_api import KfpApi  # noqa: E402
from mmvideos.cluster.schedule import code_ref  # noqa: E402
from mmvideos.settings import load_params  # noqa: E402

CRON = "0 0 3 * * 0"


def _schedule(api, *extra):
    return main(["schedule", "--host", api.url, "--cron", CRON, "--version", "git-abc123",
                 "--source", "gs://videos/in", "--pipeline-root", "gs://team/root", *extra])


def test_scheduling_twice_keeps_one_schedule_on_one_named_version(capsys):
    with KfpApi() as api:
        assert _schedule(api) == 0
        assert "created" in capsys.readouterr().out
        first = api.api_calls()
        assert ("POST", "pipelines/upload") in first and ("POST", "pipelines/upload_version") in first
        assert first[-1] == ("POST", "recurringruns")
        assert _schedule(api) == 0
        assert "unchanged" in capsys.readouterr().out
        again = api.api_calls()[len(first):]
        # the second time finds the pipeline, its version and the schedule: nothing is created
        assert not [c for c in again if c[0] in ("POST", "DELETE") and c[1] != "experiments"]
        (run,) = api.recurring_runs.values()
        assert len(api.experiments) == 1 and len(api.pipelines) == 1
        ours = next(v for v in api.versions.values() if v["display_name"].startswith("git-abc123-spec-"))
        # upload_pipeline's first version (named as the pipeline) and ours
        assert sorted(v["display_name"] for v in api.versions.values()) == sorted(["mmvideos", ours["display_name"]])
        assert run["pipeline_version_reference"] == {"pipeline_id": ours["pipeline_id"],
                                                     "pipeline_version_id": ours["pipeline_version_id"]}
        assert "pipeline_spec" not in run  # against the version, not an inlined spec
        assert run["trigger"]["cron_schedule"]["cron"] == CRON
        assert int(run["max_concurrency"]) == 1 and run["no_catchup"] is True
        assert run["service_account"] == "mmvideos-pipeline"
        parameters = run["runtime_config"]["parameters"]
        assert run["runtime_config"]["pipeline_root"] == "gs://team/root"
        assert parameters["source"] == "gs://videos/in"
        # the drift step follows the schedule's own series of label tables (the whole section is passed)
        assert parameters["drift_params"] == {**load_params()["label_drift"], "follow": "mmvideos-reannotation"}
        assert ours["pipeline_spec"]["defaultPipelineRoot"] == "gs://team/root"


def test_a_changed_schedule_is_refused_then_replaced_never_duplicated(capsys):
    with KfpApi() as api:
        assert _schedule(api) == 0
        (old,) = api.recurring_runs
        assert main(["schedule", "--host", api.url, "--cron", "0 0 4 * * 0", "--version", "git-abc123",
                     "--source", "gs://videos/in", "--pipeline-root", "gs://team/root"]) == 2
        assert "--replace" in capsys.readouterr().err
        assert list(api.recurring_runs) == [old]
        assert main(["schedule", "--host", api.url, "--cron", "0 0 4 * * 0", "--version", "git-def456",
                     "--source", "gs://videos/in", "--pipeline-root", "gs://team/root", "--replace"]) == 0
        assert "replaced" in capsys.readouterr().out
        (run,) = api.recurring_runs.values()
        assert run["recurring_run_id"] != old and run["trigger"]["cron_schedule"]["cron"] == "0 0 4 * * 0"
        assert ("DELETE", f"recurringruns/{old}") in api.api_calls()
        assert len([v for v in api.versions.values() if v["display_name"] != "mmvideos"]) == 2


def _in_a_new_process(args: list[str], seed: int) -> None:
    """``mmvideos ARGS`` in its own interpreter, with its own string hashing (as two shells get)."""
    done = subprocess.run([sys.executable, "-m", "mmvideos.cli", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONHASHSEED": str(seed)})
    assert done.returncode == 0, done.stderr[-3000:]


def test_compiling_twice_writes_the_same_bytes(tmp_path):
    """kfp's header comment lists a dict parameter's default in the protobuf Struct's order, which
    follows string hashing (different per process): ``write_package`` sorts it."""
    for seed in (1, 2):
        _in_a_new_process(["compile", "--output", str(tmp_path / f"{seed}.yaml")], seed)
    assert (tmp_path / "1.yaml").read_bytes() == (tmp_path / "2.yaml").read_bytes()


@pytest.mark.parametrize("multi_user", [False, True], ids=["single-user", "multi-user"])
def test_three_schedules_in_separate_processes_leave_one_version_and_one_recurring_run(multi_user):
    """The version name hashes the parsed spec, and the pipeline is looked up with its namespace:
    kfp's ``Client.get_pipeline_id`` lists without one (kfp 2.17.0 ``client.py`` L490-516), which
    in multi-user mode finds only shared pipelines (``pipeline_store.go`` L231-236), so a second
    upload would hit the unique (namespace, name) index (``model/pipeline.go`` L44, L54)."""
    with KfpApi(multi_user=multi_user) as api:
        for seed in (1, 2, 3):
            _in_a_new_process(["schedule", "--host", api.url, "--cron", CRON, "--version", "git-abc123",
                               "--source", "gs://videos/in", "--namespace", "team-a"], seed)
        (pipeline,) = api.pipelines.values()
        assert pipeline["namespace"] == ("team-a" if multi_user else "")
        ours = [v for v in api.versions.values() if v["display_name"] != "mmvideos"]
        assert len(ours) == 1 and ours[0]["display_name"].startswith("git-abc123-spec-")
        (run,) = api.recurring_runs.values()
        assert run["pipeline_version_reference"]["pipeline_version_id"] == ours[0]["pipeline_version_id"]


def test_submit_runs_once_with_the_pipeline_root_and_the_auth_token():
    with KfpApi() as api:
        assert main(["submit", "--host", api.url, "--source", "gs://videos/in", "--pipeline-root", "gs://team/root",
                     "--token", "secret-token", "--service-account", "team-sa"]) == 0
        (run,) = api.runs.values()
        assert run["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "mmvideos"  # spec + platform spec
        assert run["runtime_config"]["pipeline_root"] == "gs://team/root"
        assert run["runtime_config"]["parameters"]["source"] == "gs://videos/in"
        assert run["service_account"] == "team-sa"
        assert not api.recurring_runs and not api.pipelines
        assert all(h.get("authorization") == "Bearer secret-token" for h in api.headers[1:])  # after the health check


def test_a_kfp_backend_before_2_14_is_refused_before_anything_is_made(capsys):
    """``dsl.Collected`` over artifacts first shipped in KFP 2.14.0 (kubeflow/pipelines root
    CHANGELOG.md L387, #11725); the version is the raw healthz ``tag_name`` (main.go L465-490)."""
    with KfpApi(tag_name="2.13.0") as api:
        assert main(["submit", "--host", api.url, "--source", "gs://videos/in"]) == 2
        assert "2.13.0 (need 2.14 or later" in capsys.readouterr().err
        assert _schedule(api) == 2
        assert not api.runs and not api.pipelines and not api.recurring_runs


def test_the_version_is_named_by_the_image_digest_else_the_git_sha(tmp_path):
    assert code_ref("ghcr.io/x/mmvideos@sha256:0123456789abcdef0123") == "sha256-0123456789ab"
    assert code_ref("ghcr.io/x/mmvideos:latest").startswith("git-")  # this checkout
    with pytest.raises(ValueError, match="--version"):
        code_ref("ghcr.io/x/mmvideos:latest", cwd=tmp_path)


def test_each_scheduled_run_compares_its_labels_with_the_previous_runs(tmp_path):
    from test_drift import _labels, _run

    from mmvideos.stages.drift import DriftConfig, label_drift, previous_labels

    root, cfg = str(tmp_path / "root"), DriftConfig(follow="weekly", top_labels=5)
    week1 = _run(tmp_path / "week1", pd.concat([_labels(60, 0.5, 1), _labels(20, 0.5, 2, "val", "v")]))
    week2 = _run(tmp_path / "week2", _labels(80, 0.95, 3, prefix="w"))
    first = label_drift(week1, tmp_path / "drift1", cfg, progress=False, root=root)
    assert first["mode"] == "train vs val"  # nothing published yet
    assert previous_labels(root, "weekly") == str(week1)
    second = label_drift(week2, tmp_path / "drift2", cfg, progress=False, root=root, published="gs://b/week2")
    assert (second["mode"], second["reference"]) == ("previous run", str(week1))
    assert second["reference_clips"] == 80 and second["current_clips"] == 80
    assert previous_labels(root, "weekly") == "gs://b/week2"
    assert previous_labels(root, "daily") is None  # another series keeps its own pointer
    with pytest.raises(ValueError, match="data root"):
        label_drift(week2, tmp_path / "drift3", cfg, progress=False)
