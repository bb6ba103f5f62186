"""Where and how every pipeline task runs on a cluster: size, retries, time limit, GPU node pool.

Two sections of ``params.yaml``, both read by ``mmvideos compile`` and fixed in the compiled YAML
(``kfp.local`` ignores them, so :func:`configure` leaves a local pipeline alone):

``resources``
    ``default`` applies to every task; an entry named after a stage (:data:`STAGES`) overrides
    some of its keys (:class:`TaskResources`). CPU and memory get requests and limits, so the
    namespace LimitRange's defaults never apply; ``ephemeral_storage`` is the size a scratch
    volume at ``/scratch`` (``TMPDIR``) requests, where the task's temporary files go. Every task
    is stopped after ``timeout_s`` and retried with exponential backoff when it *fails* (finds its
    finished shards in the data root); :func:`retry_window` says how the settings become Argo's
    ``retryStrategy`` and why a deleted (preempted) pod is not retried by Argo.

``cluster``
    The GPU node pool (:class:`Cluster`): accelerator resource name, node-selector label and
    value, toleration key. These are parameters, not GKE constants: on EKS or AKS set e.g.
    ``node_selector_key: node.kubernetes.io/instance-type``. A stage whose ``device`` asks for
    ``cuda`` (annotate_visual, features, transfer, annotate_audio) lands on that pool with
    ``accelerator_count`` GPUs; so does pretraining unless its ``device`` is ``cpu`` or it runs
    as a Kubeflow Trainer ``TrainJob`` (``pretrain.num_nodes > 1``), whose nodes get the GPUs
    (:mod:`mmvideos.cluster.trainjob`) while the pipeline task only submits and follows it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from mmvideos.config import from_dict

#: The task kinds of the pipeline, as named in the ``resources`` section.
STAGES = ("list_source", "probe", "ingest", "clip", "gather", "annotate_visual", "annotate_audio", "merge_labels",
          "label_drift", "features", "pretrain", "transfer", "report")

#: Where a task's scratch volume is mounted; ``TMPDIR`` points there.
SCRATCH = "/scratch"

#: The memory-backed volume at /dev/shm of a GPU task (DataLoader workers pass batches through
#: shared memory; a container's default /dev/shm is 64 MiB). It counts against memory_limit.
SHM_VOLUME = "dshm"

#: The size of the pretrain task when it only follows a TrainJob (``pretrain.num_nodes > 1``): it
#: submits the job, prints node 0's log and copies the exported model; the nodes get
#: ``resources.pretrain``.
FOLLOWER = {"cpu_request": "1", "cpu_limit": "2", "memory_request": "2Gi", "memory_limit": "4Gi",
            "ephemeral_storage": "10Gi"}

#: Environment variable carrying the compiled placement of the pretrain task to its component
#: (the TrainJob it submits needs the image, the node pool and the node size).
PLACEMENT_ENV = "MMVIDEOS_PLACEMENT"


@dataclasses.dataclass(frozen=True)
class TaskResources:
    """Size, retries and time limit of one task's pod (Kubernetes quantities as strings).

    Attributes:
        cpu_request: CPUs the scheduler reserves.
        cpu_limit: CPUs the container may use.
        memory_request: memory the scheduler reserves (e.g. 4Gi).
        memory_limit: memory above which the container is OOM-killed.
        ephemeral_storage: the storage the scratch volume at /scratch (TMPDIR) requests: a generic
            ephemeral volume (a claim made with the pod and deleted with it), the one per-task
            storage request KFP's IR can carry (it has no ``ephemeral-storage`` resource).
        retries: times a failed task is started again: Argo's ``retryStrategy.limit`` (attempts
            are ``retries + 1``). Argo retries a *failed* pod (the main container exited non-zero,
            was OOM-killed, or the pod was evicted with a message), not a deleted one (see
            :func:`retry_window`).
        backoff: wait before the first retry (e.g. 30s, 2m): ``retryStrategy.backoff.duration``.
        backoff_factor: each later wait is this many times the one before:
            ``retryStrategy.backoff.factor``, a whole number (Argo reads it as an int-or-string).
        timeout_s: each attempt's pod is stopped after this many seconds: the pod's
            ``activeDeadlineSeconds``. Argo's ``backoff.maxDuration`` is derived from it
            (:func:`retry_window`), not set.
    """

    cpu_request: str = "1"
    cpu_limit: str = "2"
    memory_request: str = "2Gi"
    memory_limit: str = "4Gi"
    ephemeral_storage: str = "10Gi"
    retries: int = 3
    backoff: str = "30s"
    backoff_factor: int = 2
    timeout_s: int = 6 * 3600

    def __post_init__(self) -> None:
        from kubernetes.utils import parse_quantity

        for name in ("cpu", "memory"):
            request, limit = getattr(self, f"{name}_request"), getattr(self, f"{name}_limit")
            if parse_quantity(str(request)) > parse_quantity(str(limit)):
                raise ValueError(f"resources: {name}_request {request} is above {name}_limit {limit}")
        parse_quantity(str(self.ephemeral_storage))
        if self.retries < 0 or self.timeout_s < 1:
            raise ValueError("resources: retries must be >= 0 and timeout_s positive")
        if self.backoff_factor < 1:
            raise ValueError(f"resources: backoff_factor must be a whole number >= 1, got {self.backoff_factor}")


def retry_window(res: TaskResources) -> int:
    """Seconds from a task's first start within which Argo may retry it: every attempt's
    ``timeout_s`` plus every backoff wait between them.

    It becomes ``retryStrategy.backoff.maxDuration`` (KFP's ``backoff_max_duration``), which Argo
    counts from the *first* attempt's start, not per attempt (workflow/controller/operator.go
    v3.7.3 L1004-1020, "Max duration limit exceeded"), refuses a retry whose wait would end past it
    (L1055-1057), and gives a retry's pod as its deadline (L1067-1068). KFP's default of one hour
    would leave a task that failed after an hour unretried; this window never cuts an attempt
    that ``timeout_s`` allows.
    """
    from kfp.dsl.structures import convert_duration_to_seconds

    waits = sum(convert_duration_to_seconds(res.backoff) * res.backoff_factor ** i for i in range(res.retries))
    return (res.retries + 1) * int(res.timeout_s) + waits


@dataclasses.dataclass(frozen=True)
class Cluster:
    """The GPU node pool and the Kubeflow Trainer runtime.

    Attributes:
        accelerator_type: the GPU resource name (nvidia.com/gpu).
        accelerator_count: GPUs per GPU task, and per node of a pretraining TrainJob.
        node_selector_key: node label that marks the GPU pool (GKE: cloud.google.com/gke-accelerator).
        node_selector_value: its value (GKE: nvidia-tesla-a100, nvidia-l4, nvidia-h100-80gb ...).
        toleration_key: taint key of the GPU nodes, tolerated with NoSchedule.
        trainer_runtime: the ClusterTrainingRuntime a multi-node TrainJob uses.
        trainer_service_account: the service account of the TrainJob's node pods.
        scratch_storage_class: the StorageClass of every task's /scratch claim ("" = the
            cluster's default, e.g. GKE's standard-rwo).
    """

    accelerator_type: str = "nvidia.com/gpu"
    accelerator_count: int = 1
    node_selector_key: str = "cloud.google.com/gke-accelerator"
    node_selector_value: str = "nvidia-tesla-a100"
    toleration_key: str = "nvidia.com/gpu"
    trainer_runtime: str = "torch-distributed"
    trainer_service_account: str = "mmvideos-trainer"
    scratch_storage_class: str = ""

    def __post_init__(self) -> None:
        if self.accelerator_count < 1:
            raise ValueError("cluster.accelerator_count must be at least 1")


def task_resources(params: dict, stage: str) -> TaskResources:
    """The resources of ``stage``: ``resources.default`` with the stage's entry over it."""
    section = params.get("resources") or {}
    unknown = sorted(set(section) - {"default", *STAGES})
    if unknown:
        raise ValueError(f"resources: unknown stage(s) {unknown}; known: default, {', '.join(STAGES)}")
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; known: {', '.join(STAGES)}")
    return from_dict(TaskResources, {**(section.get("default") or {}), **(section.get(stage) or {})})


def cluster(params: dict) -> Cluster:
    """The ``cluster`` section as :class:`Cluster`."""
    return from_dict(Cluster, params.get("cluster"))


def follows_trainjob(params: dict) -> bool:
    """Whether the pretrain task runs a multi-node TrainJob rather than training itself."""
    return int((params.get("pretrain") or {}).get("num_nodes") or 1) > 1


def wants_gpu(params: dict, stage: str) -> bool:
    """Whether ``stage`` runs on the GPU node pool: its ``device`` asks for ``cuda``, or it is
    single-node pretraining with ``device: auto`` (pretraining is what the GPUs are for)."""
    settings = params.get(stage) or {}
    device = str(settings.get("device") or "")
    if stage == "pretrain":
        return device != "cpu" and not follows_trainjob(params)
    return device.startswith("cuda")


def configure(task, stage: str, params: dict, on_cluster: bool = True):
    """Apply ``stage``'s resources, retry policy, timeout and placement to a pipeline task.

    With ``on_cluster`` false (``kfp.local``) the task is returned as it is: the local runner
    ignores pod settings, and its retries would only repeat a deterministic failure.
    """
    if not on_cluster:
        return task
    from kfp import kubernetes

    from mmvideos.components import IMAGE

    res = task_resources(params, stage)
    if stage == "pretrain" and follows_trainjob(params):
        res = dataclasses.replace(res, **FOLLOWER)
    task.set_cpu_request(str(res.cpu_request)).set_cpu_limit(str(res.cpu_limit))
    task.set_memory_request(str(res.memory_request)).set_memory_limit(str(res.memory_limit))
    if res.retries:
        task.set_retry(num_retries=res.retries, backoff_duration=res.backoff, backoff_factor=res.backoff_factor,
                       backoff_max_duration=f"{retry_window(res)}s")
    kubernetes.set_timeout(task, int(res.timeout_s))
    pool = cluster(params)
    kubernetes.add_ephemeral_volume(task, volume_name="scratch", mount_path=SCRATCH, access_modes=["ReadWriteOnce"],
                                    size=str(res.ephemeral_storage),
                                    storage_class_name=pool.scratch_storage_class or None,
                                    labels={"app.kubernetes.io/name": "mmvideos"})
    task.set_env_variable("TMPDIR", SCRATCH)
    if wants_gpu(params, stage):
        task.set_accelerator_type(pool.accelerator_type).set_accelerator_limit(pool.accelerator_count)
        kubernetes.add_node_selector(task, label_key=pool.node_selector_key, label_value=pool.node_selector_value)
        kubernetes.add_toleration(task, key=pool.toleration_key, operator="Exists", effect="NoSchedule")
        kubernetes.empty_dir_mount(task, volume_name=SHM_VOLUME, mount_path="/dev/shm", medium="Memory")
    if stage == "pretrain":
        task.set_env_variable(PLACEMENT_ENV, json.dumps(pretrain_placement(params, IMAGE)))
    return task


def pretrain_placement(params: dict, image: str) -> dict[str, Any]:
    """What a pretraining TrainJob needs of the compiled settings: image, node pool, node size."""
    return {"image": image, "gpu": wants_gpu(params, "pretrain"), "cluster": dataclasses.asdict(cluster(params)),
            "resources": dataclasses.asdict(task_resources(params, "pretrain"))}


def compiled_placement() -> dict[str, Any] | None:
    """The placement :func:`configure` gave this pretrain task (``None`` outside a cluster)."""
    text = os.environ.get(PLACEMENT_ENV)
    return json.loads(text) if text else None
