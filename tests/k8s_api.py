"""A loopback Kubernetes API server that grants exactly the RBAC manifests it is given, and
records every request with the RBAC attributes the real API server derives from it.

No cluster runs here. The ``kubernetes`` client (and the ``kubeflow`` SDK over it) talks real
HTTP to this stand-in, which keeps TrainJobs, one ClusterTrainingRuntime and a TrainJob's node
pods in memory. Each request is turned into (verb, API group, resource, subresource, namespace,
name) as ``k8s.io/apiserver`` ``pkg/endpoints/request/requestinfo.go`` does (GET of a collection
is ``list``, of a named object ``get``; POST ``create``; DELETE ``delete``; a subresource is
``resource/sub``), and allowed only when a rule grants it, as RBAC's ``RuleAllows``
(``plugin/pkg/auth/authorizer/rbac/rbac.go``): a Role's rules in its namespace, a ClusterRole's
(through a ClusterRoleBinding) everywhere. A refused request gets the 403 Status RBAC returns.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass

from loopback import LoopbackApi

TRAINER = "trainer.kubeflow.org"


@dataclass(frozen=True)
class Request:
    """One request as RBAC sees it."""

    verb: str
    group: str
    resource: str  # with its subresource: pods/log
    namespace: str  # "" for a cluster-scoped object
    name: str
    allowed: bool


def request_info(method: str, path: str, query: dict) -> tuple[str, str, str, str, str]:
    """(verb, group, resource, namespace, name) of a resource request."""
    parts = path.strip("/").split("/")
    if parts[0] == "api":  # the core group: /api/v1/...
        group, rest = "", parts[2:]
    else:  # /apis/GROUP/VERSION/...
        group, rest = parts[1], parts[3:]
    namespace = ""
    if rest[:1] == ["namespaces"] and len(rest) > 2:
        namespace, rest = rest[1], rest[2:]
    resource, name = rest[0], rest[1] if len(rest) > 1 else ""
    if len(rest) > 2:
        resource += "/" + rest[2]
    verb = {"POST": "create", "DELETE": "delete", "PATCH": "patch", "PUT": "update"}.get(method)
    if verb is None:
        verb = "watch" if query.get("watch") in ("true", "1") else ("get" if name else "list")
    return verb, group, resource, namespace, name


def rule_allows(rule: dict, verb: str, group: str, resource: str, name: str) -> bool:
    """RBAC's ``RuleAllows``: every one of verb, group, resource and (when listed) name matches."""
    return ((verb in rule["verbs"] or "*" in rule["verbs"])
            and (group in rule["apiGroups"] or "*" in rule["apiGroups"])
            and (resource in rule["resources"] or "*" in rule["resources"])
            and (not rule.get("resourceNames") or name in rule["resourceNames"]))


class KubeApi(LoopbackApi):
    """The server; ``url`` its endpoint, ``requests`` what it saw. ``manifests`` are the rendered
    RBAC objects (Role, RoleBinding, ClusterRole, ClusterRoleBinding) for ``subject`` in
    ``namespace``; a TrainJob created here completes at once (with ``complete``, else it never
    does), with one node pod and its log."""

    def __init__(self, manifests: list[dict], namespace: str, subject: str, runtime: dict,
                 complete: bool = True, trainer_version: str = "v2.3.0") -> None:
        self.namespace, self.requests, self.trainjobs, self.complete = namespace, [], {}, complete
        self.trainer_version = trainer_version
        self.runtime = runtime
        self._rules = self._granted(manifests, namespace, subject)
        super().__init__()

    @staticmethod
    def _granted(manifests: list[dict], namespace: str, subject: str) -> list[tuple[str, dict]]:
        """(scope, rule) pairs bound to ``subject``: scope is the namespace, or "*" cluster-wide."""
        roles = {(doc["kind"], doc["metadata"]["name"]): doc for doc in manifests
                 if doc["kind"] in ("Role", "ClusterRole")}
        granted = []
        for binding in manifests:
            if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
                continue
            if not any(s["kind"] == "ServiceAccount" and s["name"] == subject
                       and s.get("namespace", namespace) == namespace for s in binding["subjects"]):
                continue
            role = roles[(binding["roleRef"]["kind"], binding["roleRef"]["name"])]
            scope = "*" if binding["kind"] == "ClusterRoleBinding" else namespace
            granted += [(scope, rule) for rule in role["rules"]]
        return granted

    def allowed(self, verb: str, group: str, resource: str, namespace: str, name: str) -> bool:
        return any((scope == "*" or (namespace and scope == namespace))
                   and rule_allows(rule, verb, group, resource, name) for scope, rule in self._rules)

    def answer(self, method: str, path: str, query: dict, body: bytes, headers) -> tuple[int, dict | str]:
        if path == "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews":  # system:basic-user may
            return 201, self._review(json.loads(body))
        verb, group, resource, namespace, name = request_info(method, path, query)
        allowed = self.allowed(verb, group, resource, namespace, name)
        self.requests.append(Request(verb, group, resource, namespace, name, allowed))
        if not allowed:
            where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
            return 403, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
                         "message": f'{resource} is forbidden: cannot {verb} resource "{resource}" in API group '
                                    f'"{group}"{where}'}
        if (group, resource) == (TRAINER, "trainjobs"):
            return self._trainjobs(verb, namespace, name, body)
        if (group, resource) == (TRAINER, "clustertrainingruntimes") and name == self.runtime["metadata"]["name"]:
            return 200, self.runtime
        if (group, resource) == ("", "pods") and verb == "list":
            return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": self._pods(query)}
        if (group, resource) == ("", "pods/log"):
            return 200, "epoch 1: loss 0.5\nepoch 2: loss 0.4\n"
        if (group, resource, namespace, name) == ("", "configmaps", "kubeflow-system", "kubeflow-trainer-public"):
            return 200, {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": name, "namespace": namespace},
                         "data": {"kubeflow_trainer_version": self.trainer_version}}
        return 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
                     "message": f'{resource} "{name}" not found'}

    def _review(self, review: dict) -> dict:
        """A SelfSubjectAccessReview answered from the granted rules (authorization.k8s.io/v1)."""
        a = review["spec"]["resourceAttributes"]
        resource = a["resource"] + (f"/{a['subresource']}" if a.get("subresource") else "")
        allowed = self.allowed(a["verb"], a.get("group", ""), resource, a.get("namespace", ""), a.get("name", ""))
        return review | {"status": {"allowed": allowed}}

    def _trainjobs(self, verb: str, namespace: str, name: str, body: bytes) -> tuple[int, dict]:
        if verb == "create":
            job = json.loads(body)
            job["metadata"] |= {"namespace": namespace, "creationTimestamp": _now(),
                                "uid": "u-" + job["metadata"]["name"]}
            job["status"] = {"conditions": [{"type": "Complete", "status": "True", "reason": "JobSetCompleted",
                                             "message": "done", "lastTransitionTime": _now()}]} if self.complete else {}
            self.trainjobs[job["metadata"]["name"]] = job
            return 201, job
        if name not in self.trainjobs:
            return 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
                         "message": f'trainjobs.{TRAINER} "{name}" not found'}
        if verb == "delete":
            return 200, self.trainjobs.pop(name)
        return 200, self.trainjobs[name]

    def _pods(self, query: dict) -> list[dict]:
        """Node 0 of the TrainJob the label selector names, finished."""
        selector = dict(item.split("=", 1) for item in query.get("labelSelector", "").split(",") if "=" in item)
        job = selector.get("jobset.sigs.k8s.io/jobset-name")
        if job not in self.trainjobs:
            return []
        return [{"metadata": {"name": f"{job}-node-0-0-abcde", "namespace": self.namespace,
                              "creationTimestamp": _now(),
                              "labels": {"jobset.sigs.k8s.io/jobset-name": job,
                                         "jobset.sigs.k8s.io/replicatedjob-name": "node",
                                         "batch.kubernetes.io/job-completion-index": "0"}},
                 "spec": {"containers": [{"name": "node", "image": "x",
                                          "resources": {"limits": {"nvidia.com/gpu": "4"}}}]},
                 "status": {"phase": "Succeeded"}}]


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
