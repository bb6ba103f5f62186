"""A loopback HTTP server speaking the part of the KFP v2beta1 REST API that ``mmvideos submit``
and ``mmvideos schedule`` use, keeping its objects in memory and recording every call.

No KFP API server runs on this machine (it needs MySQL, ml-metadata and a Kubernetes cluster),
so this is the stand-in: ``kfp.Client`` talks real HTTP to it, and tests read ``calls`` and the
stored objects. It keeps the API's rules that matter here: names are unique per kind (a second
upload of a pipeline name or version name is a 409), and filters select by display name.
"""

from __future__ import annotations

import json
import uuid
from email.parser import BytesParser
from email.policy import default

import yaml

from loopback import LoopbackApi

PREFIX = "/apis/v2beta1/"


class KfpApi(LoopbackApi):
    """The server's state; ``url`` is its endpoint, ``calls`` the (method, path, query) it saw."""

    def __init__(self, multi_user: bool = False, tag_name: str = "2.17.0") -> None:
        self.multi_user, self.tag_name = multi_user, tag_name
        self.calls: list[tuple[str, str, dict]] = []
        self.experiments: dict[str, dict] = {}
        self.pipelines: dict[str, dict] = {}
        self.versions: dict[str, dict] = {}
        self.recurring_runs: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.headers: list[dict] = []  # per call, names lower-cased
        super().__init__()

    def answer(self, method: str, path: str, query: dict, body: bytes, headers) -> tuple[int, dict]:
        """Record the call (and its headers), then :meth:`route` it below the API prefix."""
        self.calls.append((method, path, query))
        self.headers.append({k.lower(): v for k, v in headers.items()})
        return self.route(method, path.removeprefix(PREFIX), query, body, headers)

    def api_calls(self) -> list[tuple[str, str]]:
        """The (method, path) of every call, without health checks."""
        return [(m, p.removeprefix(PREFIX)) for m, p, _ in self.calls if not p.endswith("healthz")]

    @staticmethod
    def _matches(item: dict, query: dict) -> bool:
        if "filter" not in query:
            return True
        for predicate in json.loads(query["filter"])["predicates"]:
            value = predicate.get("string_value", predicate.get("stringValue"))
            if item.get(predicate["key"]) != value:
                return False
        return True

    @staticmethod
    def _upload(body: bytes, headers) -> dict:
        """The pipeline spec of a multipart upload (its ``uploadfile`` part)."""
        message = BytesParser(policy=default).parsebytes(
            f"Content-Type: {headers['Content-Type']}\r\n\r\n".encode() + body)
        (part,) = [p for p in message.iter_parts() if p.get_param("name", header="content-disposition") == "uploadfile"]
        return next(yaml.safe_load_all(part.get_payload(decode=True)))

    def route(self, method: str, path: str, query: dict, body: bytes, headers) -> tuple[int, dict]:
        parts = path.split("/")
        if path == "healthz":
            return 200, {"commit_sha": "0" * 40, "tag_name": self.tag_name, "multi_user": self.multi_user}
        if path == "experiments":
            if method == "GET":
                found = [e for e in self.experiments.values() if self._matches(e, query)]
                return 200, {"experiments": found, "total_size": len(found)}
            exp = json.loads(body) | {"experiment_id": str(uuid.uuid4())}
            self.experiments[exp["experiment_id"]] = exp
            return 200, exp
        if path == "pipelines" and method == "GET":
            namespace = self._namespace(query)
            found = [p for p in self.pipelines.values() if self._matches(p, query) and p["namespace"] == namespace]
            return 200, {"pipelines": found, "total_size": len(found)}
        if path == "pipelines/upload":
            name, namespace = query["name"], self._namespace(query)
            if any((p["namespace"], p["name"]) == (namespace, name) for p in self.pipelines.values()):
                return 409, {"error": f"pipeline {name} exists in namespace {namespace!r}", "code": 6}
            pipeline = {"pipeline_id": str(uuid.uuid4()), "name": name, "display_name": name, "namespace": namespace}
            self.pipelines[pipeline["pipeline_id"]] = pipeline
            self._version(pipeline["pipeline_id"], name, self._upload(body, headers))
            return 200, pipeline
        if path == "pipelines/upload_version":
            pid, name = query["pipelineid"], query["name"]
            if any(v["pipeline_id"] == pid and v["display_name"] == name for v in self.versions.values()):
                return 409, {"error": f"version {name} exists", "code": 6}
            return 200, self._version(pid, name, self._upload(body, headers))
        if len(parts) == 3 and parts[0] == "pipelines" and parts[2] == "versions":
            found = [v for v in self.versions.values() if v["pipeline_id"] == parts[1] and self._matches(v, query)]
            return 200, {"pipeline_versions": found, "total_size": len(found)}
        if path == "recurringruns":
            if method == "GET":
                found = [r for r in self.recurring_runs.values() if self._matches(r, query)
                         and r.get("experiment_id") == query.get("experiment_id", r.get("experiment_id"))]
                return 200, {"recurringRuns": found, "total_size": len(found)}
            run = json.loads(body) | {"recurring_run_id": str(uuid.uuid4()), "status": "ENABLED"}
            self.recurring_runs[run["recurring_run_id"]] = run
            return 200, run
        if parts[0] == "recurringruns" and method == "DELETE":
            self.recurring_runs.pop(parts[1])
            return 200, {}
        if path == "runs" and method == "POST":
            run = json.loads(body) | {"run_id": str(uuid.uuid4()), "state": "PENDING"}
            self.runs[run["run_id"]] = run
            return 200, run
        return 404, {"error": f"{method} {path} is not part of this stand-in", "code": 5}

    def _namespace(self, query: dict) -> str:
        """The namespace a call names, as the server keeps it ("" in single-user mode)."""
        return query.get("namespace", "") if self.multi_user else ""

    def _version(self, pipeline_id: str, name: str, spec: dict) -> dict:
        version = {"pipeline_id": pipeline_id, "pipeline_version_id": str(uuid.uuid4()), "display_name": name,
                   "pipeline_spec": spec}
        self.versions[version["pipeline_version_id"]] = version
        return version
