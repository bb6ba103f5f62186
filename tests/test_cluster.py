"""The compiled IR as a cluster reads it: every task sized, retried and bounded; GPU tasks placed."""

from __future__ import annotations

import json

import pytest
import yaml
from kubernetes.utils import parse_quantity

from mmvideos.cli import main
from mmvideos.cluster.placement import PLACEMENT_ENV, STAGES, configure, task_resources
from mmvideos.settings import load_params


def _compile(tmp_path, params: dict | None = None, *extra: str) -> tuple[dict, dict]:
    args = []
    if params is not None:
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        args = ["--params", str(tmp_path / "params.yaml")]
    target = tmp_path / "pipeline.yaml"
    assert main([*args, "compile", "--output", str(target), *extra]) == 0
    spec, platform = yaml.safe_load_all(target.read_text())
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def _tasks(spec: dict) -> dict[str, dict]:
    """Every task of every DAG (root and ParallelFor bodies), by ``component/task`` name."""
    found = {f"root/{name}": task for name, task in spec["root"]["dag"]["tasks"].items()}
    for comp_name, comp in spec["components"].items():
        found |= {f"{comp_name}/{name}": task for name, task in comp.get("dag", {}).get("tasks", {}).items()}
    return found


def test_every_executor_is_sized_retried_and_bounded(tmp_path):
    spec, pods = _compile(tmp_path, None, "--pipeline-root", "gs://team-bucket/pipeline-root")
    assert spec["defaultPipelineRoot"] == "gs://team-bucket/pipeline-root"
    executors = spec["deploymentSpec"]["executors"]
    assert len(executors) >= 12
    for name, executor in executors.items():
        res = executor["container"]["resources"]
        for key in ("resourceCpuRequest", "resourceCpuLimit", "resourceMemoryRequest", "resourceMemoryLimit"):
            assert key in res, f"{name} sets no {key}"
        assert parse_quantity(res["resourceCpuRequest"]) <= parse_quantity(res["resourceCpuLimit"])
        assert parse_quantity(res["resourceMemoryRequest"]) <= parse_quantity(res["resourceMemoryLimit"])
        pod = pods[name]
        assert int(pod["activeDeadlineSeconds"]) > 0, name
        # a storage *request* the scheduler and provisioner honour, not a size limit on the node's disk:
        # KFP's driver makes it the claim's resources.requests.storage (backend/src/v2/driver/k8s.go
        # 2.14.0 L418-452); an emptyDir's sizeLimit reserves nothing, so the LimitRange's 2Gi scheduled it
        (scratch,) = [m for m in pod.get("genericEphemeralVolume", []) if m["mountPath"] == "/scratch"]
        assert parse_quantity(scratch["size"]) > 0 and scratch["accessModes"] == ["ReadWriteOnce"], name
        assert scratch["defaultStorageClass"] is True  # cluster.scratch_storage_class: "" (the cluster's default)
        assert not [m for m in pod.get("emptyDirMounts", []) if m["mountPath"] == "/scratch"]
        assert {"name": "TMPDIR", "value": "/scratch"} in executor["container"]["env"]
    # the per-stage sizes of params.yaml are what lands in the YAML
    clip = executors["exec-clip-slot"]["container"]["resources"]
    assert (clip["resourceCpuRequest"], clip["resourceMemoryLimit"]) == ("8", "16Gi")
    assert pods["exec-clip-slot"]["genericEphemeralVolume"][0]["size"] == "100Gi"
    assert pods["exec-list-source"]["activeDeadlineSeconds"] == str(task_resources(load_params(), "list_source").timeout_s)
    tasks = _tasks(spec)
    executor_tasks = {n: t for n, t in tasks.items() if "componentRef" in t
                      and f"exec-{t['componentRef']['name'].removeprefix('comp-')}" in executors}
    assert len(executor_tasks) >= 16
    for name, task in executor_tasks.items():
        policy = task.get("retryPolicy")
        assert policy and policy["maxRetryCount"] == 3, f"{name} has no retry policy"
        assert policy["backoffDuration"] == "30s" and policy["backoffFactor"] == 2


def test_the_retry_fields_mean_to_argo_what_the_settings_say(tmp_path):
    """The IR's retry policy as KFP's backend hands it to Argo (argocompiler/container.go 2.17.0
    L667-685: limit, backoff duration, factor, maxDuration; durations as seconds, argo.go L501-503):
    - ``backoffFactor`` is parsed with ``intstr.Int32`` (Argo operator.go v3.7.3 L1034;
      util/intstr/parametrizable.go L11-22 "cannot be resolved to an int"): a whole number;
    - ``backoffMaxDuration`` counts from the first attempt's start (operator.go v3.7.3
      L1004-1020) and a retry whose wait ends past it is refused (L1055-1057): it must hold every
      attempt's ``activeDeadlineSeconds`` (per pod: workflowpod.go L163-179) and every wait, or a
      task that failed late in a long attempt is never retried;
    - ``backoffDuration`` is set (operator.go L1024-1025: "no base duration specified").
    """
    spec, pods = _compile(tmp_path, None, "--pipeline-root", "gs://team-bucket/pipeline-root")
    executors = spec["deploymentSpec"]["executors"]
    checked = 0
    for name, task in _tasks(spec).items():
        executor = f"exec-{task['componentRef']['name'].removeprefix('comp-')}" if "componentRef" in task else None
        if executor not in executors:
            continue
        policy, deadline = task["retryPolicy"], int(pods[executor]["activeDeadlineSeconds"])
        factor, retries = policy["backoffFactor"], policy["maxRetryCount"]
        assert float(factor).is_integer() and factor >= 1, f"{name}: backoffFactor {factor} is not an integer"
        assert int(policy["backoffDuration"].removesuffix("s")) > 0, name
        waits = sum(int(policy["backoffDuration"].removesuffix("s")) * int(factor) ** i for i in range(retries))
        window = int(policy["backoffMaxDuration"].removesuffix("s"))
        assert window >= (retries + 1) * deadline + waits, (
            f"{name}: maxDuration {window}s from the first start cuts retries of attempts of {deadline}s")
        checked += 1
    assert checked >= 16
    with pytest.raises(ValueError, match="whole number"):
        task_resources({"resources": {"default": {"backoff_factor": 1.5}}}, "clip")


def test_scratch_claims_use_the_named_storage_class(tmp_path):
    params = load_params()
    params["cluster"] = dict(params["cluster"], scratch_storage_class="premium-rwo")
    _, pods = _compile(tmp_path, params)
    (scratch,) = pods["exec-clip-slot"]["genericEphemeralVolume"]
    assert (scratch["storageClassName"], scratch.get("defaultStorageClass", False)) == ("premium-rwo", False)


def test_without_a_pipeline_root_the_namespace_default_applies(tmp_path):
    spec, _ = _compile(tmp_path)
    assert "defaultPipelineRoot" not in spec


def _gpu(executor: dict, pod: dict) -> bool:
    has_accelerator = "accelerator" in executor["container"]["resources"]
    placed = "nodeSelector" in pod and "tolerations" in pod
    assert has_accelerator == placed, pod
    return has_accelerator


def test_tasks_set_to_cuda_land_on_the_gpu_pool_with_the_cluster_settings(tmp_path):
    params = load_params()
    params["annotate_visual"]["device"] = "cuda"
    params["features"]["device"] = "cuda:0"
    params["cluster"] |= {"accelerator_type": "nvidia.com/gpu", "accelerator_count": 2,
                          "node_selector_key": "node.kubernetes.io/instance-type",
                          "node_selector_value": "p4d.24xlarge", "toleration_key": "gpu-only"}
    spec, pods = _compile(tmp_path, params)
    executors = spec["deploymentSpec"]["executors"]
    on_gpu = {name for name in executors if _gpu(executors[name], pods[name])}
    assert on_gpu == {"exec-annotate-visual", "exec-extract-features", "exec-pretrain"}
    for name in on_gpu:
        accelerator = executors[name]["container"]["resources"]["accelerator"]
        assert (accelerator["resourceType"], accelerator["resourceCount"]) == ("nvidia.com/gpu", "2")
        assert pods[name]["nodeSelector"]["labels"] == {"node.kubernetes.io/instance-type": "p4d.24xlarge"}
        assert pods[name]["tolerations"] == [{"key": "gpu-only", "operator": "Exists", "effect": "NoSchedule"}]
        assert {"volumeName": "dshm", "mountPath": "/dev/shm", "medium": "Memory"} in pods[name]["emptyDirMounts"]


def test_multi_node_pretraining_leaves_the_gpus_to_the_trainjob(tmp_path):
    params = load_params()
    params["pretrain"] = dict(params["pretrain"], num_nodes=2)
    spec, pods = _compile(tmp_path, params)
    pretrain = spec["deploymentSpec"]["executors"]["exec-pretrain"]
    assert not _gpu(pretrain, pods["exec-pretrain"])
    env = {e["name"]: e["value"] for e in pretrain["container"]["env"]}
    placement = json.loads(env[PLACEMENT_ENV])
    assert placement["cluster"]["trainer_runtime"] == "torch-distributed"
    assert placement["resources"]["memory_limit"] == params["resources"]["pretrain"]["memory_limit"]
    assert placement["image"] == pretrain["container"]["image"] and placement["gpu"] is False
    # the task only follows the job: a small pod (the nodes get resources.pretrain, above)
    res = pretrain["container"]["resources"]
    assert (res["resourceCpuRequest"], res["resourceMemoryLimit"]) == ("1", "4Gi")
    assert pods["exec-pretrain"]["activeDeadlineSeconds"] == str(params["resources"]["pretrain"]["timeout_s"])


def test_bad_resources_are_refused_before_compiling():
    params = load_params()
    with pytest.raises(ValueError, match="unknown stage"):
        task_resources({"resources": {"clips": {}}}, "clip")
    with pytest.raises(ValueError, match="cpu_request 8 is above cpu_limit 4"):
        task_resources({"resources": {"clip": {"cpu_request": "8", "cpu_limit": "4"}}}, "clip")
    assert set(params["resources"]) - {"default"} <= set(STAGES)


def test_a_local_pipeline_is_left_alone():
    class Task:  # configure() must not touch a task that kfp.local runs
        def __getattr__(self, name):
            raise AssertionError(f"{name} called on a local task")

    task = Task()
    assert configure(task, "clip", load_params(), on_cluster=False) is task


def test_on_a_cluster_the_demo_defaults_are_refused_naming_the_setting(monkeypatch, tmp_path):
    from mmvideos.demo.benchmark import resolve_benchmark
    from mmvideos.demo.corpus import resolve_source

    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")  # what the kubelet sets in every pod
    monkeypatch.setenv("MMVIDEOS_CACHE", str(tmp_path))  # had it tried a download, it would land here
    with pytest.raises(ValueError, match=r"set the run parameter `source` \(params.yaml data.source\)"):
        resolve_source("")
    with pytest.raises(ValueError, match="benchmarks.esc50"):
        resolve_benchmark("esc50", "")
    assert not any(tmp_path.iterdir())
    assert resolve_source("gs://videos/in") == "gs://videos/in"


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without a GPU")
def test_device_cuda_refuses_to_train_without_a_gpu_and_auto_says_what_it_used(tmp_path):
    import torch

    from mmvideos.stages.pretrain import PretrainConfig, pretrain
    from mmvideos.training.synthetic import write_synthetic_features

    features = write_synthetic_features(tmp_path / "features", num_clips=24, val_clips=8)
    small = dict(model="vggish", width_mult=0.0625, epochs=1, batch_size=8, num_workers=0, val_clips=0)
    with pytest.raises(RuntimeError, match="no usable GPU"):
        pretrain(features, tmp_path / "cuda", PretrainConfig(device="cuda", **small), progress=False)
    summary = pretrain(features, tmp_path / "auto", PretrainConfig(device="auto", **small), progress=False)
    assert (summary["device"], summary["device_asked"], summary["gpus"]) == ("cpu", "auto", 0)
    assert summary["hardware"] == f"cpu {torch.backends.cpu.get_cpu_capability()}"  # what sets the rounding
