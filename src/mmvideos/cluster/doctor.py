"""What a first run on a new cluster needs, checked from outside before it (``mmvideos doctor``).

Each check says what it looked at and why the pipeline needs it:

- the KFP backend's version, from the API server's raw ``/apis/v2beta1/healthz`` (its
  ``tag_name``; kfp-server-api's model drops that field, so ``kfp.Client`` cannot read it): at
  least :data:`MIN_KFP`, the first release that runs ``dsl.Collected`` over artifacts
  (kubeflow/pipelines#11725);
- the Kubeflow Trainer's version, from the ``kubeflow-trainer-public`` ConfigMap its control
  plane publishes (where the kubeflow SDK reads it): at least :data:`MIN_TRAINER`, the first with
  ``runtimePatches`` (kubeflow/trainer#3309). Unreadable for most users: then unknown, not failed;
- the TrainJob runtime (``cluster.trainer_runtime``) exists, looked up as the SDK does;
- every permission of :data:`ACCESS`, by a ``SelfSubjectAccessReview`` each: as the caller, or
  as the pipeline's service account when ``as_service_account`` is given (impersonation rights);
- the pipeline root and the data root take a write and a delete.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from pathlib import Path

from mmvideos.cluster.schedule import Auth
from mmvideos.data import storage

#: dsl.Collected over artifacts first shipped in KFP 2.14.0 (backend and SDK; kubeflow/pipelines#11725).
MIN_KFP = (2, 14)
#: spec.runtimePatches first shipped in Kubeflow Trainer 2.2.0 (kubeflow/trainer#3309).
MIN_TRAINER = (2, 2)
#: Where the Trainer publishes its version (kubeflow 0.5.0 trainer/backends/kubernetes/backend.py L71-77).
TRAINER_CONFIG_MAP = ("kubeflow-system", "kubeflow-trainer-public", "kubeflow_trainer_version")

#: What the pipeline's pods do on the Kubernetes API, as manifests/base grants it: (API group,
#: resource, subresource, verb, namespaced). tests/test_doctor.py holds it to the manifests.
ACCESS = (
    ("", "configmaps", "", "get", True),  # the KFP launcher reads kfp-launcher
    ("argoproj.io", "workflowtaskresults", "", "create", True),  # Argo's executor reports outputs
    ("argoproj.io", "workflowtaskresults", "", "patch", True),
    ("trainer.kubeflow.org", "trainjobs", "", "create", True),  # multi-node pretraining
    ("trainer.kubeflow.org", "trainjobs", "", "get", True),
    ("trainer.kubeflow.org", "trainjobs", "", "delete", True),
    ("trainer.kubeflow.org", "trainingruntimes", "", "get", True),  # the SDK reads the job's runtime
    ("trainer.kubeflow.org", "clustertrainingruntimes", "", "get", False),
    ("", "pods", "", "list", True),  # the job's node pods
    ("", "pods", "log", "get", True),  # node 0's log
)


@dataclasses.dataclass(frozen=True)
class Check:
    """One check: ``ok`` is ``None`` when it could not tell."""

    what: str
    ok: bool | None
    detail: str


def parse_version(tag: str) -> tuple[int, int] | None:
    """(major, minor) of a release tag such as ``2.17.0`` or ``v2.3.0``; ``None`` for anything else."""
    found = re.match(r"^v?(\d+)\.(\d+)", tag.strip())
    return (int(found[1]), int(found[2])) if found else None


def _version_check(what: str, tag: str, minimum: tuple[int, int], why: str) -> Check:
    version = parse_version(tag)
    if version is None:
        return Check(what, None, f"reports {tag!r}, not a release: need {minimum[0]}.{minimum[1]} or later ({why})")
    return Check(what, version >= minimum, f"{tag} (need {minimum[0]}.{minimum[1]} or later: {why})")


def kfp_version(host: str, auth: Auth = Auth()) -> Check:
    """The KFP backend's version from ``GET {host}/apis/v2beta1/healthz`` (``tag_name``)."""
    import requests

    headers = {}
    token = auth.token or (Path(auth.sa_token).read_text().strip() if auth.sa_token else None)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if auth.cookies:
        headers["Cookie"] = auth.cookies
    reply = requests.get(host.rstrip("/") + "/apis/v2beta1/healthz", headers=headers, timeout=30,
                         verify=auth.ssl_ca_cert or True)
    reply.raise_for_status()
    health = reply.json()
    check = _version_check("Kubeflow Pipelines", str(health.get("tag_name", "")), MIN_KFP,
                           "dsl.Collected over artifacts")
    mode = "multi-user" if health.get("multi_user") else "single-user"
    return dataclasses.replace(check, detail=f"{check.detail}; {mode}")


def kubernetes_checks(namespace: str, runtime: str, as_service_account: str | None = None) -> list[Check]:
    """Trainer version, the runtime, and every permission of :data:`ACCESS`, on the current kube context."""
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    config.load_kube_config()
    api_client = client.ApiClient()
    who = "you"
    if as_service_account:
        who = f"system:serviceaccount:{namespace}:{as_service_account}"
        api_client.set_default_header("Impersonate-User", who)
    core, custom = client.CoreV1Api(api_client), client.CustomObjectsApi(api_client)
    checks = []
    system_ns, name, key = TRAINER_CONFIG_MAP
    try:
        tag = (core.read_namespaced_config_map(name, system_ns).data or {}).get(key, "")
        checks.append(_version_check("Kubeflow Trainer", tag, MIN_TRAINER, "spec.runtimePatches"))
    except ApiException as exc:
        checks.append(Check("Kubeflow Trainer", None, f"cannot read ConfigMap {system_ns}/{name} ({exc.status}): "
                                                      f"check it is {MIN_TRAINER[0]}.{MIN_TRAINER[1]} or later"))
    checks.append(_runtime_check(custom, namespace, runtime))
    review_api = client.AuthorizationV1Api(api_client)
    for group, resource, subresource, verb, namespaced in ACCESS:
        attributes = client.V1ResourceAttributes(group=group, resource=resource, subresource=subresource or None,
                                                 verb=verb, namespace=namespace if namespaced else None)
        review = review_api.create_self_subject_access_review(client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(resource_attributes=attributes)))
        target = "/".join(filter(None, (group or "core", resource, subresource)))
        scope = f"in {namespace}" if namespaced else "cluster-wide"
        checks.append(Check(f"{verb} {target}", bool(review.status.allowed), f"{who}, {scope}"))
    return checks


def _runtime_check(custom, namespace: str, runtime: str) -> Check:
    """The runtime as the SDK finds it: a TrainingRuntime in the namespace, else a ClusterTrainingRuntime."""
    from kubernetes.client.exceptions import ApiException

    group, version = "trainer.kubeflow.org", "v1alpha1"
    for kind, lookup in (("TrainingRuntime", lambda: custom.get_namespaced_custom_object(
                              group, version, namespace, "trainingruntimes", runtime)),
                         ("ClusterTrainingRuntime", lambda: custom.get_cluster_custom_object(
                              group, version, "clustertrainingruntimes", runtime))):
        try:
            lookup()
            return Check(f"runtime {runtime}", True, f"a {kind}")
        except ApiException as exc:
            if exc.status != 404:
                return Check(f"runtime {runtime}", False, f"cannot read the {kind} ({exc.status} {exc.reason})")
    return Check(f"runtime {runtime}", False, "neither a TrainingRuntime in the namespace nor a ClusterTrainingRuntime "
                                              "(install the Trainer's runtimes, or set cluster.trainer_runtime)")


def writable(what: str, uri: str) -> Check:
    """Whether ``uri`` takes a small write and its delete."""
    probe = storage.join(uri, f".mmvideos-doctor-{uuid.uuid4().hex[:8]}")
    try:
        storage.put_bytes(b"mmvideos doctor\n", probe)
        storage.delete(probe)
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        return Check(what, False, f"{uri}: {type(exc).__name__}: {exc}")
    return Check(what, True, f"{uri}: write and delete")


def run_checks(host: str, namespace: str, runtime: str, roots: dict[str, str], auth: Auth = Auth(),
               as_service_account: str | None = None) -> list[Check]:
    """Every check, in order: KFP, then the Kubernetes side, then the ``roots`` (name -> URI)."""
    checks = [kfp_version(host, auth), *kubernetes_checks(namespace, runtime, as_service_account)]
    return checks + [writable(what, uri) for what, uri in roots.items()]
