"""The TrainJob against what Kubeflow Trainer 2.2 and 2.3 admit: the CRD's schema, and the webhook's rules.

No Trainer runs here, so its rules are checked offline, each from its upstream source:
- the CRD's OpenAPI schema (types, required fields, bounds) and its structural pruning (a field
  the schema does not know is dropped without an error), from the CRD YAML vendored unchanged in
  ``tests/upstream/`` (kubeflow/trainer tags v2.2.0 and v2.3.0,
  ``manifests/base/crds/trainer.kubeflow.org_trainjobs.yaml``);
- the CEL rules on the object's name, read from that CRD (``trainjob_types.go`` v2.2.0 L36-37);
- the validating webhook's rules, which no CRD carries (``pkg/runtime/framework/plugins/jobset/
  jobset.go``, ``plugins/torch/torch.go``, ``pkg/webhooks/trainjob_webhook.go``), re-stated here
  in Python with their lines.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from mmvideos.cluster.placement import pretrain_placement
from mmvideos.cluster.trainjob import build_trainjob, export_uri
from mmvideos.settings import load_params
from mmvideos.stages.pretrain import PretrainConfig

UPSTREAM = Path(__file__).parent / "upstream"
TRAINER_VERSIONS = ("v2.2.0", "v2.3.0")
CHECKPOINT = "gs://team-data/root/pretrain/abc/checkpoint.pt"
FEATURES = "gs://team-data/pipeline-root/features"

# k8s.io/apimachinery pkg/util/validation/validation.go (v0.35.2, Trainer v2.2.0's; v0.36.2 the same)
DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"  # L155
DNS1123_SUBDOMAIN = re.compile(rf"^{DNS1123_LABEL}(\.{DNS1123_LABEL})*$")  # L184, at most 253 (L191)
HTTP_PATH = re.compile(r"^[A-Za-z0-9/\-._~%!$&'()*+,;=:]+$")  # L88 httpPathFmt

#: torch.go v2.3.0 L64-77 (constants.go L300, TorchRunReservedEnvNames): set by the runtime, refused in the job.
TORCH_RESERVED_ENV = {"PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT"}
#: jobset.go v2.3.0 L181-206: "must not have envs for the ... containers" in a runtime patch.
NO_ENV_CONTAINERS = {"dataset-initializer", "model-initializer", "node"}
#: trainjob_webhook.go v2.3.0 L114-118 with runtime.go L246-251: the registered runtime kinds
#: (clustertrainingruntime.go L48, trainingruntime.go L61); anything else is "unsupported runtime".
RUNTIME_KINDS = {"ClusterTrainingRuntime", "TrainingRuntime"}


def is_domain_prefixed_path(value: str) -> bool:
    """``validation.IsDomainPrefixedPath`` (validation.go L96-117), which the webhook applies to
    ``runtimePatches[].manager`` (jobset.go v2.2.0 L129, v2.3.0 L176), with the CRD's length
    bounds (``trainjob_types.go`` v2.2.0 L291-295: MinLength 1, MaxLength 253)."""
    host, sep, path = value.partition("/")
    return (0 < len(value) <= 253 and bool(sep and host and path) and len(host) <= 253
            and bool(DNS1123_SUBDOMAIN.match(host)) and bool(HTTP_PATH.match(path)))


def crd_schema(version: str) -> dict:
    """The ``v1alpha1`` OpenAPI schema of the vendored TrainJob CRD."""
    with gzip.open(UPSTREAM / f"trainer-{version}-trainjobs.yaml.gz", "rt") as f:
        (crd,) = [doc for doc in yaml.safe_load_all(f) if doc]
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    return served["schema"]["openAPIV3Schema"]


def pruned_fields(value, schema: dict, path: str = "") -> list[str]:
    """The fields a structural schema drops on admission (apiextensions pruning): keys of an
    object that its schema neither lists nor preserves. ``metadata`` is the API server's own."""
    found = []
    if isinstance(value, dict) and schema.get("type") == "object":
        if schema.get("x-kubernetes-preserve-unknown-fields") or "additionalProperties" in schema:
            extra = schema.get("additionalProperties")
            return [p for k, v in value.items() for p in (pruned_fields(v, extra, f"{path}.{k}") if extra else [])]
        props = schema.get("properties") or {}
        for key, item in value.items():
            if key not in props:
                found.append(f"{path}.{key}")
            elif not (path == "" and key == "metadata"):
                found += pruned_fields(item, props[key], f"{path}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            found += pruned_fields(item, schema["items"], f"{path}[{i}]")
    return found


def admission_errors(job: dict) -> list[str]:
    """What Trainer's validating webhook would refuse in ``job`` (create), rule by rule."""
    errors, spec = [], job["spec"]
    kind = spec["runtimeRef"].get("kind", "ClusterTrainingRuntime")  # CRD default, types.go v2.3.0 L157-177
    if kind not in RUNTIME_KINDS:
        errors.append(f"unsupported runtime: {kind}")
    for env in spec.get("trainer", {}).get("env") or []:
        if env["name"] in TORCH_RESERVED_ENV:
            errors.append(f"spec.trainer.env: {env['name']} is reserved for the torch runtime")
    managers = [patch.get("manager", "") for patch in spec.get("runtimePatches") or []]
    if len(managers) != len(set(managers)):  # listType=map keyed by manager (types.go v2.2.0 L118-124)
        errors.append(f"runtimePatches: duplicate manager in {managers}")
    for patch in spec.get("runtimePatches") or []:
        if not is_domain_prefixed_path(patch.get("manager", "")):
            errors.append(f"runtimePatches.manager {patch.get('manager')!r}: must be a domain-prefixed path")
        template = ((patch.get("trainingRuntimeSpec") or {}).get("template") or {}).get("spec") or {}
        for rjob in template.get("replicatedJobs") or []:
            pod = rjob["template"]["spec"]["template"].get("spec") or {}
            for container in (pod.get("containers") or []) + (pod.get("initContainers") or []):
                if container["name"] in NO_ENV_CONTAINERS and container.get("env"):
                    errors.append(f"runtimePatches: must not have envs for the {container['name']} container")
    return errors


def name_errors(job: dict, schema: dict) -> list[str]:
    """The CEL rules of the CRD on ``metadata.name``, checked to be the ones the CRD holds."""
    rules = {rule["rule"] for rule in schema["x-kubernetes-validations"]}
    assert "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')" in rules
    assert "size(self.metadata.name) <= 63" in rules
    name = job["metadata"]["name"]
    return [] if re.match(r"^[a-z]([-a-z0-9]*[a-z0-9])?$", name) and len(name) <= 63 else [f"bad name {name!r}"]


def two_nodes_of_four_gpus(**changes) -> dict:
    """The TrainJob ``mmvideos`` submits for 2 nodes x 4 GPUs, as JSON on the wire."""
    params = load_params()
    params["cluster"] = dict(params["cluster"], accelerator_count=4, node_selector_value="nvidia-h100-80gb")
    placement = pretrain_placement(params, "ghcr.io/mmvideos/mmvideos@sha256:" + "0" * 64)
    cfg = PretrainConfig(**{"num_nodes": 2, "epochs": 30, "batch_size": 1024, "device": "auto", **changes})
    job = build_trainjob(cfg, FEATURES, CHECKPOINT, export_uri(CHECKPOINT), placement)
    return json.loads(json.dumps(job.to_dict()))


def test_the_admission_rules_as_restated_here_match_upstream_examples():
    """IsDomainPrefixedPath's examples (validation.go L104 "such as acme.io/foo"; the SDK's
    ``trainer.kubeflow.org/kubeflow-sdk``, kubeflow 0.5.0 ``trainer/options/kubernetes.py`` L227-229)."""
    for good in ("trainer.kubeflow.org/kubeflow-sdk", "kueue.x-k8s.io/manager", "acme.io/foo", "a.io/b/c"):
        assert is_domain_prefixed_path(good), good
    for bad in ("mmvideos", "my-tool", "Example.com/x", "a_b.io/x", "/x", "a.io/", ""):
        assert not is_domain_prefixed_path(bad), bad


@pytest.mark.parametrize("version", TRAINER_VERSIONS)
def test_a_trainjob_of_2_nodes_x_4_gpus_passes_the_crd_schema(version):
    """types, bounds and required fields of the CRD's openAPIV3Schema; no field pruned (a field
    of another Trainer version, e.g. v2.1's ``podTemplateOverrides``, would vanish silently)."""
    job, schema = two_nodes_of_four_gpus(), crd_schema(version)
    jsonschema.Draft7Validator(schema).validate(job)
    assert pruned_fields(job, schema) == []
    assert pruned_fields({**job, "spec": {**job["spec"], "podTemplateOverrides": []}}, schema) == [
        ".spec.podTemplateOverrides"]  # the check sees what v2.1's field would become on 2.2+
    assert name_errors(job, schema) == []
    assert job["spec"]["trainer"]["numProcPerNode"] == 4  # int32 since v2.2.0 (types.go v2.3.0 L288)


@pytest.mark.parametrize("version", TRAINER_VERSIONS)
def test_a_trainjob_of_2_nodes_x_4_gpus_passes_the_admission_webhook(version):
    """jobset.go v2.2.0 L129 / v2.3.0 L176 (manager), L181-206 (no env on ``node``), torch.go
    L64-77 (reserved PET_* env), trainjob_webhook.go L114-118 (runtime kind)."""
    job = two_nodes_of_four_gpus()
    assert admission_errors(job) == []
    (patch,) = job["spec"]["runtimePatches"]
    assert patch["manager"] == "mmvideos.github.io/pipeline"


def test_the_node_pods_get_no_istio_sidecar():
    """kubeflow/trainer v2.3.0 docs/legacy-v1/user-guides/pytorch.md L17 (the annotation), and
    kubeflow/trainer#2794 (the label on the runtime's pod template, for Trainer 2.x)."""
    (patch,) = two_nodes_of_four_gpus()["spec"]["runtimePatches"]
    (node,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    metadata = node["template"]["spec"]["template"]["metadata"]
    assert metadata["labels"]["sidecar.istio.io/inject"] == "false"
    assert metadata["annotations"]["sidecar.istio.io/inject"] == "false"


def test_the_job_name_changes_with_every_setting_that_shapes_the_weights():
    """A job of the same name is followed, not created (``run_trainjob``): a run with more epochs,
    more nodes or another device must not find the older finished job and fetch its model."""
    base = two_nodes_of_four_gpus()["metadata"]["name"]
    assert two_nodes_of_four_gpus()["metadata"]["name"] == base  # a retried task finds its own job
    for change in ({"epochs": 40}, {"num_nodes": 4}, {"device": "cpu"}, {"lr": 2e-4}):
        assert two_nodes_of_four_gpus(**change)["metadata"]["name"] != base, change
