"""Runs on a Kubeflow Pipelines API: one run (``submit``) or a recurring run (``schedule``).

``schedule`` keeps one recurring run per name. It uploads the pipeline (once per namespace) and
a pipeline version named by the image digest or the git SHA plus a hash of the parsed compiled
spec (reused when it exists), so the UI shows which code a scheduled run ran; the same inputs
compile to the same bytes, so a second call finds everything it made. In multi-user mode the
pipeline is looked up in ``namespace`` (``kfp.Client.get_pipeline_id`` sees only shared ones). The recurring run is created
against that version; running ``schedule`` again with the same name finds it: unchanged (same
version, cron, arguments, service account) it is kept, otherwise it is refused unless
``replace`` is set, which deletes the old recurring run and creates the new one. The v2beta1 API
has no update of a recurring run, so replace is delete + create; nothing ever duplicates.

A recurring run starts the whole DAG on its cron schedule. Its first step lists the source and
is never cached; each map stage finds the shards it already wrote in the data root, so a run
over a few new videos costs only those. Caching is left to the compiled tasks. Its label drift
step compares with the previous scheduled run's labels: ``schedule`` sets ``label_drift.follow``
to the recurring run's name, and each run reads, then moves, that name's pointer in the data root.

Authentication follows ``kfp.Client``: a bearer token (``token``), the cookies of a browser
session behind Dex/IAP (``cookies``), or inside the cluster the projected service account
token (``sa_token``: :class:`kfp.client.ServiceAccountTokenVolumeCredentials`).
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import logging
import re
import subprocess
import tempfile
from pathlib import Path

from mmvideos.settings import load_params

log = logging.getLogger(__name__)

#: The service account of manifests/base/service-account.yaml (bound to the mmvideos-pipeline Role).
DEFAULT_SERVICE_ACCOUNT = "mmvideos-pipeline"

#: Where the projected KFP token lives in a Kubeflow pod (``kfp.Client``'s default).
SA_TOKEN_PATH = "/var/run/secrets/kubeflow/pipelines/token"

_FIELDS = ("second", "minute", "hour", "day of month", "month", "day of week")


def check_cron(expression: str) -> str:
    """Validate a KFP cron expression: six fields, seconds first (``0 0 3 * * 0``: Sundays 03:00).

    Raises ``ValueError`` naming the problem; returns the normalised expression.
    """
    fields = expression.split()
    if len(fields) != len(_FIELDS):
        hint = " (KFP cron has a leading seconds field: prefix yours with '0 ')" if len(fields) == 5 else ""
        raise ValueError(f"cron {expression!r} has {len(fields)} fields, KFP needs 6: {', '.join(_FIELDS)}{hint}")
    allowed = set("0123456789*/,-?LW#") | set("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    for name, field in zip(_FIELDS, fields):
        if not set(field.upper()) <= allowed:
            raise ValueError(f"cron {expression!r}: the {name} field {field!r} has characters cron does not take")
    return " ".join(fields)


@dataclasses.dataclass(frozen=True)
class Auth:
    """How to authenticate to the KFP API (``kfp.Client``'s conventions).

    Attributes:
        token: a bearer token (e.g. ``gcloud auth print-identity-token`` behind IAP).
        cookies: a browser session's cookies, e.g. ``authservice_session=...`` behind Dex.
        sa_token: path of a service account token file (in-cluster; :data:`SA_TOKEN_PATH`).
        ssl_ca_cert: CA bundle of the endpoint's certificate.
    """

    token: str | None = None
    cookies: str | None = None
    sa_token: str | None = None
    ssl_ca_cert: str | None = None


def connect(host: str, auth: Auth = Auth(), namespace: str | None = None):
    """A ``kfp.Client`` for ``host`` with ``auth``."""
    from kfp import Client
    from kfp.client import ServiceAccountTokenVolumeCredentials

    if sum(x is not None for x in (auth.token, auth.cookies, auth.sa_token)) > 1:
        raise ValueError("give one of --token, --cookies, --sa-token")
    credentials = ServiceAccountTokenVolumeCredentials(auth.sa_token) if auth.sa_token else None
    return Client(host=host, existing_token=auth.token, cookies=auth.cookies, credentials=credentials,
                  ssl_ca_cert=auth.ssl_ca_cert, namespace=namespace or "kubeflow")


#: A line of the compiled YAML's header that shows a dict parameter's default (kfp writes the
#: protobuf Struct's keys in hash order, which differs from one process to the next).
_HEADER_DEFAULT = re.compile(r"^(#\s+\w+: dict \[Default: )(\{.*\})(\])$", re.MULTILINE)


def _sorted(value):
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    return [_sorted(v) for v in value] if isinstance(value, list) else value


def canonical_package(text: str) -> str:
    """The compiled YAML with the dict defaults of its header comment in sorted key order: the
    same inputs give the same bytes in every process (the spec below the header already is)."""
    return _HEADER_DEFAULT.sub(lambda m: f"{m[1]}{_sorted(ast.literal_eval(m[2]))!r}{m[3]}", text)


def write_package(target: Path, params: dict, pipeline_root: str | None = None) -> Path:
    """Compile the pipeline for ``params`` into ``target`` (:func:`canonical_package`)."""
    from kfp import compiler

    from mmvideos.pipelines.mmvideos_pipeline import build_pipeline

    compiler.Compiler().compile(build_pipeline(params, pipeline_root=pipeline_root), str(target))
    target.write_text(canonical_package(target.read_text()))
    return target


def code_ref(image: str, cwd: str | Path | None = None) -> str:
    """What names the code a version runs: the image digest, else the git SHA of the checkout.

    Raises ``ValueError`` when there is neither (pass ``--version``).
    """
    if "@sha256:" in image:
        return "sha256-" + image.split("@sha256:", 1)[1][:12]
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        raise ValueError(f"the image {image} has no digest and this is no git checkout: name the version with "
                         "--version (e.g. the image's digest)") from None
    return f"git-{sha}"


def version_name(package: Path, ref: str) -> str:
    """``ref`` and a hash of the compiled spec: a changed params.yaml is a new version even at one SHA.

    The hash is of the parsed documents in canonical JSON, so comments and key order do not count.
    """
    import yaml

    documents = list(yaml.safe_load_all(package.read_text()))
    canonical = json.dumps(documents, sort_keys=True, separators=(",", ":"))
    return f"{ref}-spec-{hashlib.sha256(canonical.encode()).hexdigest()[:8]}"


def _filter(key: str, value: str) -> str:
    return json.dumps({"predicates": [{"key": key, "operation": "EQUALS", "string_value": value}]})


def _pipeline_version(client, package: Path, pipeline_name: str, version: str, namespace: str | None) -> tuple[str, str]:
    """(pipeline id, version id): the pipeline uploaded once, the version uploaded unless it exists.

    The pipeline is looked up by name in ``namespace``: the API lists one namespace at a time (the
    shared pipelines without one) and keeps (namespace, name) unique (KFP 2.17
    ``storage/pipeline_store.go`` L231-236, ``model/pipeline.go`` L44-54).
    """
    found = client.list_pipelines(filter=_filter("name", pipeline_name), namespace=namespace).pipelines or []
    pipeline_id = found[0].pipeline_id if found else None
    if pipeline_id is None:
        pipeline_id = client.upload_pipeline(str(package), pipeline_name=pipeline_name, namespace=namespace).pipeline_id
    versions = client.list_pipeline_versions(pipeline_id, filter=_filter("display_name", version)).pipeline_versions
    if versions:
        return pipeline_id, versions[0].pipeline_version_id
    made = client.upload_pipeline_version(str(package), pipeline_version_name=version, pipeline_id=pipeline_id)
    return pipeline_id, made.pipeline_version_id


@dataclasses.dataclass(frozen=True)
class Scheduled:
    """What ``schedule`` did: ``created``, ``unchanged`` or ``replaced`` the recurring run."""

    recurring_run_id: str
    action: str
    version: str


def schedule(host: str, cron: str, name: str = "mmvideos-reannotation", experiment: str = "mmvideos",
             params_path: str | Path | None = None, arguments: dict | None = None, namespace: str | None = None,
             service_account: str | None = DEFAULT_SERVICE_ACCOUNT, pipeline_root: str | None = None,
             version: str | None = None, replace: bool = False, auth: Auth = Auth()) -> Scheduled:
    """Create (or keep, or with ``replace`` replace) the recurring run ``name`` on the KFP API at ``host``.

    ``arguments`` override pipeline parameters (e.g. ``{"source": "gs://bucket/videos"}``).
    Runs never overlap (``max_concurrency=1``) and missed slots are not caught up. ``version``
    names the code (default :func:`code_ref`). Raises ``ValueError`` when a recurring run of that
    name differs and ``replace`` is false.
    """
    from mmvideos.components import IMAGE
    from mmvideos.pipelines.mmvideos_pipeline import PIPELINE_NAME, parameter_default

    cron = check_cron(cron)
    # the drift report of each scheduled run compares with the previous run's labels: the series'
    # pointer in the data root (a dict parameter is replaced whole, so pass the full section)
    drift = parameter_default(load_params(params_path).get("label_drift") or {})
    arguments = {"drift_params": drift | {"follow": name}, **(arguments or {})}
    ref = version or code_ref(IMAGE)
    client = connect(host, auth, namespace)
    exp = client.create_experiment(experiment, namespace=namespace)  # returns the existing one by name
    with tempfile.TemporaryDirectory() as tmp:
        package = write_package(Path(tmp) / "pipeline.yaml", load_params(params_path), pipeline_root)
        version_label = version_name(package, ref)
        pipeline_id, version_id = _pipeline_version(client, package, PIPELINE_NAME, version_label, namespace)
    existing = client.list_recurring_runs(experiment_id=exp.experiment_id, namespace=namespace, page_size=100,
                                          filter=_filter("display_name", name)).recurring_runs or []
    existing = [run for run in existing if run.display_name == name]
    action = "created"
    if existing:
        old = existing[0]
        same = (old.pipeline_version_reference and old.pipeline_version_reference.pipeline_version_id == version_id
                and old.trigger.cron_schedule.cron == cron and dict(old.runtime_config.parameters or {}) == arguments
                and (old.service_account or None) == (service_account or None))
        if same and len(existing) == 1:
            return Scheduled(old.recurring_run_id, "unchanged", version_label)
        if not replace:
            raise ValueError(f"recurring run {name!r} exists ({old.recurring_run_id}) with another version, cron, "
                             "arguments or service account: pass --replace to replace it, or choose another --name")
        for run in existing:
            client.delete_recurring_run(run.recurring_run_id)
        action = "replaced"
    run = client.create_recurring_run(
        experiment_id=exp.experiment_id, job_name=name, cron_expression=cron, max_concurrency=1, no_catchup=True,
        params=arguments, pipeline_id=pipeline_id, version_id=version_id, pipeline_root=pipeline_root,
        enable_caching=None, service_account=service_account)
    log.info("%s recurring run %s of %s (%s)", action, run.recurring_run_id, PIPELINE_NAME, version_label)
    return Scheduled(run.recurring_run_id, action, version_label)


def submit(host: str, params_path: str | Path | None = None, arguments: dict | None = None,
           run_name: str | None = None, experiment: str = "mmvideos", namespace: str | None = None,
           service_account: str | None = DEFAULT_SERVICE_ACCOUNT, pipeline_root: str | None = None,
           auth: Auth = Auth()) -> str:
    """Compile the pipeline and start one run of it on the KFP API at ``host``; the run id."""
    client = connect(host, auth, namespace)
    with tempfile.TemporaryDirectory() as tmp:
        package = write_package(Path(tmp) / "pipeline.yaml", load_params(params_path), pipeline_root)
        result = client.create_run_from_pipeline_package(
            str(package), arguments=arguments or {}, run_name=run_name, experiment_name=experiment,
            namespace=namespace, pipeline_root=pipeline_root, enable_caching=None, service_account=service_account)
    return result.run_id
