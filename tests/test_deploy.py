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
from mmvideos.config import load_params
from mmvideos.schedule import DEFAULT_SERVICE_ACCOUNT

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = sorted(p for p in (REPO / "manifests").glob("*.yaml") if p.name != "kustomization.yaml")


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifests_validate_against_the_kubernetes_schema(path):
    for doc in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(doc, "1.30", strict=True)  # raises on any schema error


def test_kustomization_lists_every_manifest():
    listed = yaml.safe_load((REPO / "manifests" / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == [p.name for p in MANIFESTS]


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    proc = subprocess.run([hadolint, str(REPO / "images" / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_repository_yaml_passes_yamllint():
    proc = subprocess.run([sys.executable, "-m", "yamllint", "-s", "-c", str(REPO / ".yamllint.yaml"),
                           "params.yaml", "dvc.yaml", "manifests", ".yamllint.yaml"],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _manifests(kind: str) -> list[dict]:
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc and doc["kind"] == kind]


def test_the_pipeline_service_account_is_bound_to_kubeflow_edit():
    (account,) = _manifests("ServiceAccount")
    (binding,) = _manifests("RoleBinding")
    assert binding["metadata"]["namespace"] == account["metadata"]["namespace"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kubeflow-edit"}
    assert {"kind": "ServiceAccount", "name": account["metadata"]["name"],
            "namespace": account["metadata"]["namespace"]} in binding["subjects"]
    # `mmvideos schedule` runs the pipeline as that account unless told otherwise
    args = build_parser().parse_args(["schedule", "--host", "h", "--cron", "0 0 3 * * 0"])
    assert args.service_account == DEFAULT_SERVICE_ACCOUNT == account["metadata"]["name"]


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
