"""The RBAC manifests against every Kubernetes API call the pretrain task makes through the SDK.

``run_trainjob`` (``mmvideos.cluster.trainjob``) drives the ``kubeflow`` SDK's ``TrainerClient``
(kubeflow 0.5.0) and the ``kubernetes`` client. Here both talk to a loopback API server
(``tests/k8s_api.py``) that grants exactly what ``kubectl kustomize manifests/base`` renders for
the ``mmvideos-pipeline`` service account, records every request as RBAC sees it, and answers a
request no rule grants with a 403. The calls are the SDK's own (kubeflow 0.5.0
``trainer/backends/kubernetes/backend.py``): ``verify_backend`` L63-87 (a ConfigMap in
``kubeflow-system``, whose failure only logs a warning), ``get_job`` L420-446 (the TrainJob,
then ``get_runtime`` L183-232: the namespaced TrainingRuntime, on 404 the ClusterTrainingRuntime,
then the node pods, L692), ``get_job_logs`` L448-468 (``pods/log``), and ours (create, get,
delete of the TrainJob).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from k8s_api import KubeApi, Request

from mmvideos.cluster.placement import pretrain_placement
from mmvideos.cluster.trainjob import build_trainjob, export_uri, run_trainjob
from mmvideos.settings import load_params
from mmvideos.stages.pretrain import PretrainConfig

REPO = Path(__file__).resolve().parents[1]
NAMESPACE, ACCOUNT = "kubeflow-user", "mmvideos-pipeline"
CHECKPOINT = "gs://team-data/root/pretrain/abc/checkpoint.pt"
RBAC_KINDS = ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")
#: The one refused call the SDK tolerates (backend.py L73-87: it logs a warning and goes on):
#: reading the Trainer's version from a ConfigMap in another namespace, which is not ours to grant.
TOLERATED = ("get", "", "configmaps", "kubeflow-system")


def rendered_rbac() -> list[dict]:
    """The RBAC objects of ``manifests/base`` as ``kubectl apply -k`` would send them."""
    kubectl = shutil.which("kubectl")
    assert kubectl, "the manifests are rendered by `kubectl kustomize`: install kubectl"
    out = subprocess.run([kubectl, "kustomize", str(REPO / "manifests" / "base")], capture_output=True, text=True,
                         check=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc and doc["kind"] in RBAC_KINDS]


def torch_runtime() -> dict:
    """Trainer v2.3.0's ``torch-distributed`` ClusterTrainingRuntime (vendored in tests/upstream/)."""
    return yaml.safe_load((REPO / "tests" / "upstream" / "trainer-v2.3.0-torch_distributed.yaml").read_text())


def trainjob():
    params = load_params()
    params["cluster"] = dict(params["cluster"], accelerator_count=4)
    placement = pretrain_placement(params, "ghcr.io/mmvideos/mmvideos@sha256:" + "0" * 64)
    cfg = PretrainConfig(num_nodes=2, epochs=30, device="auto")
    return build_trainjob(cfg, "gs://team-data/pipeline-root/features", CHECKPOINT, export_uri(CHECKPOINT), placement)


def follow(manifests: list[dict], kubeconfig, failed_before: bool) -> tuple[list[Request], Exception | None]:
    """``run_trainjob`` against the stand-in granting ``manifests``: fresh, or over a failed job."""
    job = trainjob()
    with KubeApi(manifests, NAMESPACE, ACCOUNT, torch_runtime()) as api:
        kubeconfig(api.url)
        if failed_before:
            then = "2026-01-01T00:00:00Z"
            api.trainjobs[job.metadata.name] = json.loads(json.dumps(job.to_dict())) | {
                "metadata": {"name": job.metadata.name, "namespace": NAMESPACE, "creationTimestamp": then},
                "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "FailedJobs",
                                           "message": "node-1 OOMKilled", "lastTransitionTime": then}]}}
        try:
            run_trainjob(job, NAMESPACE, timeout_s=30, poll_s=1)
        except Exception as exc:  # noqa: BLE001 - the caller looks at what failed
            return api.requests, exc
        return api.requests, None


def _used(requests: list[Request]) -> set[tuple[str, str, str]]:
    return {(r.group, r.resource, r.verb) for r in requests if (r.verb, r.group, r.resource, r.namespace) != TOLERATED}


def _granted(manifests: list[dict]) -> set[tuple[str, str, str]]:
    return {(group, resource, verb) for doc in manifests if doc["kind"] in ("Role", "ClusterRole")
            for rule in doc["rules"] for group in rule["apiGroups"] for resource in rule["resources"]
            for verb in rule["verbs"]}


#: What the KFP driver/launcher and Argo's executor use, not the SDK (tests/test_deploy.py: POD_NEEDS).
NOT_THE_SDKS = {("", "configmaps", "get"), ("argoproj.io", "workflowtaskresults", "create"),
                ("argoproj.io", "workflowtaskresults", "patch")}


def test_the_manifests_grant_every_call_the_sdk_makes_and_no_more(kubeconfig):
    manifests = rendered_rbac()
    used: set[tuple[str, str, str]] = set()
    for failed_before in (False, True):
        requests, error = follow(manifests, kubeconfig, failed_before)
        assert error is None, f"run_trainjob failed: {error!r}"
        assert [r for r in requests if not r.allowed and (r.verb, r.group, r.resource, r.namespace) != TOLERATED] == []
        used |= _used(requests)
    # the cluster-scoped read the issue found refused, now granted by cluster-role.yaml
    assert ("trainer.kubeflow.org", "clustertrainingruntimes", "get") in used
    assert ("trainer.kubeflow.org", "trainjobs", "delete") in used  # the failed job replaced
    assert _granted(manifests) - NOT_THE_SDKS == used  # exactly what the SDK path uses


def test_a_terminated_run_deletes_its_trainjob(kubeconfig):
    """Argo stops a terminated run's pods with SIGTERM (the pod deadline too): the follower
    deletes the job it follows, with the ``delete`` the Role grants, rather than leave it on the GPUs."""
    import os
    import signal
    import threading

    job = trainjob()
    with KubeApi(rendered_rbac(), NAMESPACE, ACCOUNT, torch_runtime(), complete=False) as api:
        kubeconfig(api.url)
        threading.Timer(2.0, os.kill, (os.getpid(), signal.SIGTERM)).start()
        with pytest.raises(SystemExit) as stopped:
            run_trainjob(job, NAMESPACE, timeout_s=60, poll_s=1)
        assert stopped.value.code == 128 + signal.SIGTERM
        assert api.trainjobs == {}
        assert [r.verb for r in api.requests if r.resource == "trainjobs"][-1] == "delete"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is the follow's only


def _without(manifests: list[dict], group: str, resource: str, verb: str) -> list[dict]:
    trimmed = json.loads(json.dumps(manifests))
    for doc in trimmed:
        for rule in doc.get("rules", []):
            if group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]:
                rule["verbs"].remove(verb)
    return trimmed


def _sdk_grants() -> list[tuple[str, str, str]]:
    return sorted(_granted(rendered_rbac()) - NOT_THE_SDKS)


@pytest.mark.parametrize("grant", _sdk_grants(), ids=lambda g: f"{g[1]}-{g[2]}")
def test_removing_any_verb_makes_the_sdk_path_fail(grant, kubeconfig):
    """Each granted verb is needed: without it some call of the run gets a 403 and the run fails."""
    manifests = _without(rendered_rbac(), *grant)
    outcomes = [follow(manifests, kubeconfig, failed_before) for failed_before in (False, True)]
    refused = [r for requests, _ in outcomes for r in requests if not r.allowed]
    assert any((r.group, r.resource, r.verb) == grant for r in refused)
    assert any(error is not None for _, error in outcomes), f"the run succeeded without {grant}"
