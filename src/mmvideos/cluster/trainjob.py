"""Multi-node pretraining as a Kubeflow Trainer ``TrainJob`` (``trainer.kubeflow.org/v1alpha1``).

With ``pretrain.num_nodes > 1`` the pipeline's pretrain task does not train: it submits a
TrainJob that runs the same entry point, ``torchrun -m mmvideos.training``, on ``num_nodes`` pods of
``cluster.accelerator_count`` GPUs each, through the cluster's ``torch-distributed``
ClusterTrainingRuntime (which sets torchrun's ``PET_NNODES``, ``PET_NPROC_PER_NODE``,
``PET_NODE_RANK`` and ``PET_MASTER_ADDR``). The task follows node 0's log, waits for the job,
and fails with the job's own reason. The nodes keep the checkpoint in the data root (``gs://``),
so every node resumes from the same state, and rank 0 places the exported model there too, where
the task reads it back into its ``Model`` artifact.

The job's name is a hash of its whole spec (image, checkpoint, every training setting, nodes and
GPUs): a retried pipeline task builds the same job, finds it still running and follows it, or,
when it failed, replaces it and resumes from the last epoch; a run with more epochs, other nodes
or another device builds another job, which resumes from the same checkpoint, and never fetches
the model of an older finished one.

Needs Kubeflow Trainer 2.2 or later: the per-job settings of the nodes (node pool, service
account, ``/dev/shm``, no Istio sidecar) travel as ``spec.runtimePatches``, which Trainer 2.2
introduced (``podTemplateOverrides`` before; a 2.0 or 2.1 API server drops the field silently).

The TrainJob is built with the ``kubeflow-trainer-api`` models; the ``kubeflow`` SDK's
``TrainerClient`` follows the logs and waits. Scaling from the paper's 4 GPUs to 8 or 32 is
``num_nodes`` x ``accelerator_count`` (docs/kubeflow.md: "Multi-node pretraining").
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml
from kubeflow_trainer_api import models

from mmvideos.data import storage
from mmvideos.stages.pretrain import PretrainConfig

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL, KIND = "trainer.kubeflow.org", "v1alpha1", "trainjobs", "TrainJob"

#: The replicated job and container of the torch runtime's nodes.
NODE = "node"

#: Where a node keeps its local copy of the outputs (the checkpoint and model go to the data root).
NODE_OUT = "/tmp/mmvideos-pretrain"

#: The ``runtimePatches[].manager`` of our patch. Trainer's admission webhook requires a
#: domain-prefixed path (``validation.IsDomainPrefixedPath``, ``jobset.go`` v2.2.0 L129); the
#: domain is the project's GitHub organisation's (the one ``ghcr.io/mmvideos`` publishes the image
#: under), as the Kubeflow SDK uses ``trainer.kubeflow.org/kubeflow-sdk``.
MANAGER = "mmvideos.github.io/pipeline"

#: Pod labels and annotations of the nodes: no Istio sidecar (in an injected Kubeflow profile
#: namespace it breaks torchrun's rendezvous and keeps a finished pod running). Istio reads the
#: label; older releases the annotation.
NODE_POD_METADATA = {"sidecar.istio.io/inject": "false"}

#: Where a pod finds its namespace.
NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def job_name(spec: models.TrainerV1alpha1TrainJobSpec) -> str:
    """An RFC 1035 label (at most 63 characters) fixed by everything in ``spec``: the same job
    for a retried task, another for any setting that shapes the weights."""
    text = json.dumps(spec.to_dict(), sort_keys=True, separators=(",", ":"))
    return "mmvideos-pretrain-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def train_args(cfg: PretrainConfig) -> list[str]:
    """``cfg`` as ``python -m mmvideos.training`` override flags (every setting, so a node needs no params file)."""
    args: list[str] = []
    for field in dataclasses.fields(PretrainConfig):
        value = getattr(cfg, field.name)
        flag = "--" + field.name.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + flag[2:])
        elif value is not None:
            args += [flag, str(value)]
    return args


def build_trainjob(cfg: PretrainConfig, features: str, checkpoint: str, export: str,
                   placement: dict[str, Any], data_root: str = "") -> models.TrainerV1alpha1TrainJob:
    """The TrainJob running ``torchrun -m mmvideos.training`` on ``cfg.num_nodes`` nodes.

    Args:
        cfg: pretraining settings; ``num_nodes`` nodes.
        features: the features folder every node reads (``gs://``).
        checkpoint: the resumable checkpoint in the data root (:func:`mmvideos.stages.pretrain.checkpoint_uri`).
        export: the data-root folder rank 0 places the exported model in.
        data_root: the data root the feature index names its shards in (``gs://``).
        placement: ``{"image", "cluster", "resources"}`` as :func:`mmvideos.cluster.placement.configure`
            compiled them: the image, the GPU node pool, and each node's size and time limit.
    """
    cluster, res = placement["cluster"], placement["resources"]
    gpus = int(cluster["accelerator_count"])
    if cfg.device == "auto":  # the nodes asked for GPUs: without one, fail rather than train on the CPU
        cfg = dataclasses.replace(cfg, device="cuda")
    def quantities(kind: str) -> dict[str, models.IoK8sApimachineryPkgApiResourceQuantity]:
        values = {"cpu": res[f"cpu_{kind}"], "memory": res[f"memory_{kind}"], cluster["accelerator_type"]: gpus}
        return {key: models.IoK8sApimachineryPkgApiResourceQuantity(str(value)) for key, value in values.items()}

    pod = models.TrainerV1alpha1PodSpecPatch(
        service_account_name=cluster["trainer_service_account"],
        node_selector={cluster["node_selector_key"]: cluster["node_selector_value"]},
        tolerations=[models.IoK8sApiCoreV1Toleration(key=cluster["toleration_key"], operator="Exists",
                                                     effect="NoSchedule")],
        volumes=[models.IoK8sApiCoreV1Volume(name="dshm", empty_dir=models.IoK8sApiCoreV1EmptyDirVolumeSource(
            medium="Memory"))],
        containers=[models.TrainerV1alpha1ContainerPatch(
            name=NODE, volume_mounts=[models.IoK8sApiCoreV1VolumeMount(name="dshm", mount_path="/dev/shm")])],
    )
    patch = models.TrainerV1alpha1RuntimePatch(
        manager=MANAGER,
        training_runtime_spec=models.TrainerV1alpha1TrainingRuntimeSpecPatch(
            template=models.TrainerV1alpha1JobSetTemplatePatch(spec=models.TrainerV1alpha1JobSetSpecPatch(
                replicated_jobs=[models.TrainerV1alpha1ReplicatedJobPatch(
                    name=NODE, template=models.TrainerV1alpha1JobTemplatePatch(
                        spec=models.TrainerV1alpha1JobSpecPatch(
                            template=models.TrainerV1alpha1PodTemplatePatch(
                                metadata=models.IoK8sApimachineryPkgApisMetaV1ObjectMeta(
                                    labels=NODE_POD_METADATA, annotations=NODE_POD_METADATA),
                                spec=pod))))]))))
    trainer = models.TrainerV1alpha1Trainer(
        image=placement["image"],
        command=["torchrun", "-m", "mmvideos.training"],
        args=["--features", features, "--out", NODE_OUT, "--resume-from", checkpoint, "--export-to", export,
              "--no-progress", *(["--data-root", data_root] if data_root else []), *train_args(cfg)],
        num_nodes=cfg.num_nodes,
        num_proc_per_node=gpus,
        resources_per_node=models.IoK8sApiCoreV1ResourceRequirements(limits=quantities("limit"), requests=quantities("request")),
        env=[models.IoK8sApiCoreV1EnvVar(name="TMPDIR", value="/tmp")],
    )
    spec = models.TrainerV1alpha1TrainJobSpec(
        runtime_ref=models.TrainerV1alpha1RuntimeRef(name=cluster["trainer_runtime"], kind="ClusterTrainingRuntime"),
        trainer=trainer, runtime_patches=[patch], active_deadline_seconds=int(res["timeout_s"]))
    return models.TrainerV1alpha1TrainJob(
        api_version=f"{GROUP}/{VERSION}", kind=KIND,
        metadata=models.IoK8sApimachineryPkgApisMetaV1ObjectMeta(
            name=job_name(spec),
            labels={"app.kubernetes.io/name": "mmvideos", "app.kubernetes.io/component": "pretrain"}),
        spec=spec,
    )


def to_yaml(job: models.TrainerV1alpha1TrainJob) -> str:
    """The TrainJob as ``kubectl apply`` takes it."""
    return yaml.safe_dump(job.to_dict(), sort_keys=False)


def failure_reason(trainjob: dict) -> str | None:
    """The reason and message of a TrainJob's ``Failed`` condition, ``None`` when it has none."""
    for condition in (trainjob.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Failed" and condition.get("status") == "True":
            return f"{condition.get('reason', 'Failed')}: {condition.get('message', '')}".rstrip(": ")
    return None


@contextlib.contextmanager
def deleted_when_stopped(delete: Callable[[], None]) -> Iterator[None]:
    """Within the block a SIGTERM first calls ``delete``, then exits (status 143).

    Argo stops a task's main container with SIGTERM when the run is terminated or the pod's
    deadline passes, and the kubelet does when the node is drained: the TrainJob must not go on
    holding its GPUs with no run to collect its model. (A pod killed without a signal leaves it
    to its own ``activeDeadlineSeconds``.) Call from the main thread, as a task's process is.
    """
    def stop(signum: int, frame: object) -> None:
        log.warning("stopped: deleting the TrainJob")
        delete()
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_trainjob(job: models.TrainerV1alpha1TrainJob, namespace: str, timeout_s: int, poll_s: int = 15) -> None:
    """Create ``job`` (or find it), print node 0's log while it runs, wait for its end.

    A job of that name still running is followed, not created again; one that failed is deleted
    and created anew (it resumes from the data root). Stopped by SIGTERM (the run terminated), it
    deletes the job (:func:`deleted_when_stopped`). Raises ``RuntimeError`` with the job's own
    failure reason, ``TimeoutError`` after ``timeout_s``.
    """
    from kubeflow.trainer import KubernetesBackendConfig, TrainerClient
    from kubernetes.client.exceptions import ApiException

    client = TrainerClient(KubernetesBackendConfig(namespace=namespace))
    api, name = client.backend.custom_api, job.metadata.name

    def current() -> dict | None:
        try:
            return api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def delete() -> None:
        api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, propagation_policy="Foreground")

    found = current()
    if found is not None and failure_reason(found):
        log.warning("TrainJob %s/%s failed before (%s): replacing it", namespace, name, failure_reason(found))
        delete()
        while current() is not None:
            time.sleep(poll_s)
        found = None
    with deleted_when_stopped(delete):
        if found is None:
            api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, job.to_dict())
            log.info("created TrainJob %s/%s", namespace, name)
        started = time.monotonic()
        client.wait_for_job_status(name, {"Running", "Complete", "Failed"}, timeout=timeout_s, polling_interval=poll_s)
        for line in client.get_job_logs(name, follow=True):
            print(line, end="" if line.endswith("\n") else "\n", flush=True)
        left = max(int(timeout_s - (time.monotonic() - started)), poll_s + 1)
        client.wait_for_job_status(name, {"Complete", "Failed"}, timeout=left, polling_interval=poll_s)
    reason = failure_reason(current() or {})
    if reason:
        raise RuntimeError(f"TrainJob {namespace}/{name} failed: {reason}")


def fetch_export(export: str, out_dir: str | Path) -> dict:
    """Copy the model rank 0 placed at ``export`` into ``out_dir``; its summary."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for uri, _, _ in storage.list_files(export):
        (out_dir / uri.rsplit("/", 1)[-1]).write_bytes(storage.read_bytes(uri))
    if not (out_dir / "summary.json").exists():
        raise RuntimeError(f"the TrainJob finished but left no model at {export}")
    return json.loads((out_dir / "summary.json").read_text())


def export_uri(checkpoint: str) -> str:
    """Where rank 0 places the exported model: beside the checkpoint in the data root."""
    return checkpoint.rsplit("/", 1)[0] + "/model"


def pretrain_on_trainjob(features_uri: str, out_dir: str | Path, cfg: PretrainConfig, checkpoint: str,
                         placement: dict[str, Any] | None, namespace: str | None = None, data_root: str = "") -> dict:
    """The pretrain task's multi-node path: submit, follow, wait, and fetch the model into ``out_dir``."""
    if placement is None:
        raise ValueError(f"pretrain.num_nodes is {cfg.num_nodes}: multi-node pretraining runs as a Kubeflow Trainer "
                         "TrainJob on a cluster (compile with `mmvideos compile`); locally set num_nodes: 1")
    if not storage.is_gcs(checkpoint) or not storage.is_gcs(features_uri):
        raise ValueError(f"a {cfg.num_nodes}-node TrainJob needs the data root and the pipeline root on gs:// (every "
                         f"node reads the features and the checkpoint), got {checkpoint} and {features_uri}")
    if namespace is None:
        if not Path(NAMESPACE_FILE).exists():
            raise ValueError("not in a pod: name the TrainJob's namespace (--namespace)")
        namespace = Path(NAMESPACE_FILE).read_text().strip()
    export = export_uri(checkpoint)
    job = build_trainjob(cfg, features_uri, checkpoint, export, placement, data_root)
    run_trainjob(job, namespace, int(placement["resources"]["timeout_s"]))
    return fetch_export(export, out_dir)
