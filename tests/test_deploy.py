"""What ships to a cluster is checked here: manifests, the image's Dockerfile, the YAML."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from kubernetes.utils import parse_quantity

from mmvideos.cli import build_parser, main
from mmvideos.cluster.schedule import DEFAULT_SERVICE_ACCOUNT
from mmvideos.settings import load_params

REPO = Path(__file__).resolve().parents[1]
BASE = REPO / "manifests" / "base"
MANIFESTS = sorted(p for p in BASE.glob("*.yaml") if p.name != "kustomization.yaml")


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifests_validate_against_the_kubernetes_schema(path):
    for doc in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(doc, "1.30", strict=True)  # raises on any schema error


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == [p.name for p in MANIFESTS]
    assert kustomization["namespace"] == "kubeflow-user"
    # the manifests name no namespace themselves: kustomize sets it, and an overlay changes it
    assert all("namespace" not in doc["metadata"] for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()))


def _kustomize(folder: Path) -> list[dict]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "the overlay is rendered by `kubectl kustomize`: install kubectl (Google Cloud SDK's apt repository)"
    out = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, check=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def test_an_overlay_moves_everything_to_another_namespace_and_identity():
    docs = _kustomize(REPO / "manifests" / "overlays" / "team-a")
    cluster_wide = {"ClusterRole", "ClusterRoleBinding"}
    assert {doc["metadata"]["namespace"] for doc in docs if doc["kind"] not in cluster_wide} == {"team-a"}
    cluster_binding = next(doc for doc in docs if doc["kind"] == "ClusterRoleBinding")
    assert cluster_binding["metadata"]["name"] == "mmvideos-trainer-runtimes-team-a"  # one per profile
    assert cluster_binding["subjects"][0]["namespace"] == "team-a"
    binding = next(doc for doc in docs if doc["kind"] == "RoleBinding")
    assert binding["subjects"][0]["namespace"] == "team-a"
    accounts = [doc for doc in docs if doc["kind"] == "ServiceAccount"]
    assert {a["metadata"]["annotations"]["iam.gke.io/gcp-service-account"] for a in accounts} == {
        "mmvideos-team-a@team-a-project.iam.gserviceaccount.com"}
    launcher = next(doc for doc in docs if doc["kind"] == "ConfigMap")
    assert launcher["data"]["defaultPipelineRoot"] == "gs://team-a-bucket/pipeline-root"
    for doc in docs:
        kubernetes_validate.validate(doc, "1.30", strict=True)


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    proc = subprocess.run([hadolint, str(REPO / "images" / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_image_finds_the_gpu_driver_where_gke_mounts_it():
    """GKE's device plugin mounts the host's driver at /usr/local/nvidia and sets no variable
    (GoogleCloudPlatform/container-engine-accelerators cmd/nvidia_gpu/nvidia_gpu.go L50-51:
    ``container-path`` default "/usr/local/nvidia", L113-114 the mount; pkg/gpu/nvidia/manager.go
    L335-347: ``Envs()`` only MPS settings): without it on the loader path torch finds no libcuda."""
    text = (REPO / "images" / "Dockerfile").read_text().replace("\\\n", " ")
    env = dict(item.split("=", 1) for line in text.splitlines() if line.startswith("ENV ")
               for item in line.split()[1:])
    assert "/usr/local/nvidia/lib64" in env["LD_LIBRARY_PATH"].split(":")
    assert env["PATH"].split(":")[0] == "/usr/local/nvidia/bin" and env["PATH"].endswith("$PATH")


def test_repository_yaml_passes_yamllint():
    proc = subprocess.run([sys.executable, "-m", "yamllint", "-s", "-c", str(REPO / ".yamllint.yaml"),
                           "params.yaml", "dvc.yaml", "manifests", ".yamllint.yaml"],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _manifests(kind: str) -> list[dict]:
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc and doc["kind"] == kind]


#: What the pipeline's pods use, and so all the Role may grant: (API group, resource) -> verbs.
POD_NEEDS = {
    ("", "configmaps"): {"get"},  # the KFP launcher reads kfp-launcher
    ("argoproj.io", "workflowtaskresults"): {"create", "patch"},  # Argo's executor reports outputs
    ("trainer.kubeflow.org", "trainjobs"): {"create", "get", "delete"},  # multi-node pretraining
    ("trainer.kubeflow.org", "trainingruntimes"): {"get"},  # the SDK reads the job's runtime (test_rbac.py)
    ("", "pods"): {"list"},  # the TrainJob's node pods ...
    ("", "pods/log"): {"get"},  # ... node 0's log, followed
}


def test_the_pipeline_role_grants_only_what_the_pods_use():
    (role,) = _manifests("Role")
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    assert granted == POD_NEEDS
    assert not any("*" in rule["verbs"] or "*" in rule["resources"] for rule in role["rules"])
    assert next(r for r in role["rules"] if r["resources"] == ["configmaps"])["resourceNames"]  # named ones only
    # cluster-wide, one read: the job's ClusterTrainingRuntime, bound to the pipeline's account only
    (cluster_role,) = _manifests("ClusterRole")
    assert cluster_role["rules"] == [{"apiGroups": ["trainer.kubeflow.org"], "resources": ["clustertrainingruntimes"],
                                      "verbs": ["get"]}]
    (cluster_binding,) = _manifests("ClusterRoleBinding")
    assert cluster_binding["roleRef"]["name"] == cluster_role["metadata"]["name"]
    assert cluster_binding["subjects"] == [{"kind": "ServiceAccount", "name": DEFAULT_SERVICE_ACCOUNT}]


def test_the_pipeline_service_account_is_bound_to_that_role_only():
    accounts = {a["metadata"]["name"]: a for a in _manifests("ServiceAccount")}
    (binding,) = _manifests("RoleBinding")
    (role,) = _manifests("Role")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": DEFAULT_SERVICE_ACCOUNT}]
    # the TrainJob's node pods use no Kubernetes API: no token, no binding
    trainer = load_params()["cluster"]["trainer_service_account"]
    assert accounts[trainer]["automountServiceAccountToken"] is False
    assert accounts[DEFAULT_SERVICE_ACCOUNT].get("automountServiceAccountToken", True)  # Argo's executor needs it
    for account in accounts.values():
        assert account["metadata"]["annotations"]["iam.gke.io/gcp-service-account"].endswith(".iam.gserviceaccount.com")
    # `mmvideos schedule` and `submit` run the pipeline as that account unless told otherwise
    for command in (["schedule", "--cron", "0 0 3 * * 0"], ["submit"]):
        args = build_parser().parse_args([*command, "--host", "h"])
        assert args.service_account == DEFAULT_SERVICE_ACCOUNT


def test_the_launcher_config_map_puts_artifacts_on_gcs():
    (launcher,) = _manifests("ConfigMap")
    assert launcher["metadata"]["name"] == "kfp-launcher"
    assert launcher["data"]["defaultPipelineRoot"].startswith("gs://")


def test_the_limit_range_covers_ephemeral_storage():
    (limit_range,) = _manifests("LimitRange")
    (rule,) = limit_range["spec"]["limits"]
    assert parse_quantity(rule["defaultRequest"]["ephemeral-storage"]) <= parse_quantity(rule["default"]["ephemeral-storage"])


def _admitted(resources: dict, limit_range: dict) -> None:
    """What the LimitRanger admission plug-in does to a container: fill in default limits and
    requests, then refuse a request above its limit or a limit above ``max``."""
    for rule in (r for r in limit_range["spec"]["limits"] if r["type"] == "Container"):
        for name in ("cpu", "memory"):
            limit = resources.get(f"{name}_limit") or rule.get("default", {}).get(name)
            request = resources.get(f"{name}_request") or rule.get("defaultRequest", {}).get(name) or limit
            if limit is not None:
                assert parse_quantity(request) <= parse_quantity(limit), f"{name} request {request} > limit {limit}"
            if name in rule.get("max", {}):
                assert limit is not None and parse_quantity(limit) <= parse_quantity(rule["max"][name])


def test_every_task_passes_the_namespace_limit_range(tmp_path):
    target = tmp_path / "pipeline.yaml"
    assert main(["compile", "--output", str(target)]) == 0
    spec, platform = yaml.safe_load_all(target.read_text())
    (limit_range,) = _manifests("LimitRange")
    for name, executor in spec["deploymentSpec"]["executors"].items():
        found = executor["container"].get("resources", {})
        resources = {"cpu_request": found.get("resourceCpuRequest"), "cpu_limit": found.get("resourceCpuLimit"),
                     "memory_request": found.get("resourceMemoryRequest"), "memory_limit": found.get("resourceMemoryLimit")}
        _admitted(resources, limit_range)
    pretrain = spec["deploymentSpec"]["executors"]["exec-pretrain"]["container"]["resources"]
    sized = load_params()["resources"]["pretrain"]
    assert (pretrain["resourceCpuLimit"], pretrain["resourceMemoryLimit"]) == (sized["cpu_limit"], sized["memory_limit"])
    # DataLoader workers share batches through /dev/shm: a memory-backed volume, not the 64 MiB default
    pod = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-pretrain"]
    assert {"volumeName": "dshm", "mountPath": "/dev/shm", "medium": "Memory"} in pod["emptyDirMounts"]


def test_a_request_above_the_default_limit_is_refused():
    (limit_range,) = _manifests("LimitRange")
    with pytest.raises(AssertionError, match="request 8 > limit 4"):
        _admitted({"cpu_request": "8", "memory_request": "64G"}, limit_range)  # the pretrain task without limits
