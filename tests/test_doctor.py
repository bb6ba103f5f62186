"""``mmvideos doctor`` against the stand-ins of a cluster: the KFP API (tests/kfp_api.py) and a
Kubernetes API server granting exactly the rendered manifests (tests/k8s_api.py).

The rules it applies, each from its source: KFP's version is the raw healthz ``tag_name``
(kubeflow/pipelines 2.17.0 ``backend/src/apiserver/main.go`` L465-490; kfp-server-api's
``V2beta1GetHealthzResponse`` has no such field), at least 2.14 (root ``CHANGELOG.md`` L387:
"enable dsl.Collected for parameters & artifacts (#11725)" under 2.14.0); the Trainer's version
is the ``kubeflow-trainer-public`` ConfigMap (kubeflow 0.5.0 ``backend.py`` L71-77), at least
2.2 (kubeflow/trainer ``CHANGELOG/CHANGELOG-2.2.md`` L48, RuntimePatches); the permissions by
``SelfSubjectAccessReview`` (kubernetes ``authorization_v1_api.py`` L182).
"""

from __future__ import annotations

import pytest
from k8s_api import KubeApi
from kfp_api import KfpApi
from test_rbac import ACCOUNT, NAMESPACE, rendered_rbac, torch_runtime

from mmvideos.cli import main
from mmvideos.cluster.doctor import ACCESS, parse_version

#: Lets the caller read the Trainer's ConfigMap, as a platform engineer's context does.
READS_TRAINER_VERSION = [
    {"kind": "ClusterRole", "metadata": {"name": "reader"},
     "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]},
    {"kind": "ClusterRoleBinding", "metadata": {"name": "reader"}, "roleRef": {"kind": "ClusterRole", "name": "reader"},
     "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": NAMESPACE}]}]


def _doctor(kfp, tmp_path, *extra):
    return main(["doctor", "--host", kfp.url, "--namespace", NAMESPACE, "--data-root", str(tmp_path / "root"),
                 "--pipeline-root", str(tmp_path / "pipeline-root"), *extra])


def test_a_ready_cluster_passes_every_check(kubeconfig, tmp_path, capsys):
    with KfpApi(multi_user=True, tag_name="2.17.0") as kfp, \
            KubeApi(rendered_rbac() + READS_TRAINER_VERSION, NAMESPACE, ACCOUNT, torch_runtime()) as kube:
        kubeconfig(kube.url)
        assert _doctor(kfp, tmp_path) == 0
    out = capsys.readouterr().out
    assert "ok   Kubeflow Pipelines: 2.17.0" in out and "multi-user" in out
    assert "ok   Kubeflow Trainer: v2.3.0" in out and "ok   runtime torch-distributed: a ClusterTrainingRuntime" in out
    assert out.count("ok   ") == 3 + len(ACCESS) + 2 and "FAIL" not in out
    assert ("GET", "/apis/v2beta1/healthz") in [(m, p) for m, p, _ in kfp.calls]
    assert not list((tmp_path / "root").iterdir())  # the probe is deleted


def test_old_versions_a_missing_runtime_and_missing_rights_fail(kubeconfig, tmp_path, capsys):
    without_runtimes = [doc for doc in rendered_rbac() if doc["kind"] in ("Role", "RoleBinding")]
    for doc in without_runtimes:
        for rule in doc.get("rules", []):
            if rule["resources"] == ["trainingruntimes"]:
                rule["verbs"] = []
    runtime = torch_runtime() | {"metadata": {"name": "another-runtime"}}
    with KfpApi(tag_name="2.13.0") as kfp, KubeApi(without_runtimes, NAMESPACE, ACCOUNT, runtime) as kube:
        kubeconfig(kube.url)
        assert _doctor(kfp, tmp_path) == 1
    out = capsys.readouterr().out
    assert "FAIL Kubeflow Pipelines: 2.13.0 (need 2.14 or later" in out
    assert "??   Kubeflow Trainer: cannot read ConfigMap kubeflow-system/kubeflow-trainer-public (403)" in out
    assert "FAIL runtime torch-distributed: cannot read the TrainingRuntime (403" in out
    assert "FAIL get trainer.kubeflow.org/clustertrainingruntimes: you, cluster-wide" in out
    assert "ok   create trainer.kubeflow.org/trainjobs" in out


def test_the_checked_permissions_are_what_the_manifests_grant():
    granted = {(g, r, v) for doc in rendered_rbac() if doc["kind"] in ("Role", "ClusterRole")
               for rule in doc["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    checked = {(g, r + (f"/{s}" if s else ""), v) for g, r, s, v, _ in ACCESS}
    assert checked == granted


@pytest.mark.parametrize(("tag", "version"), [("2.17.0", (2, 17)), ("v2.3.0", (2, 3)), ("2.14.0-rc.1", (2, 14)),
                                              ("unknown", None), ("", None)])
def test_release_tags_are_read_as_versions(tag, version):
    assert parse_version(tag) == version
