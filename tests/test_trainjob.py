"""Multi-node pretraining: the Kubeflow Trainer TrainJob, and the entry point it runs on 2 nodes.

No Kubernetes cluster (nor the Trainer controller) runs here. The TrainJob is built with the
``kubeflow-trainer-api`` models and checked field by field; what the job's nodes run is run for
real: ``torchrun --nnodes 2`` twice on this machine (one process per "node", c10d rendezvous on
localhost, gloo on the CPU), the checkpoint on the GCS emulator. One node is killed in the middle
of an epoch; a rerun on fresh "pods" ends with the weights of an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest
import torch
import yaml
from kubeflow_trainer_api import models
from safetensors.torch import load_file

from mmvideos.cluster.placement import pretrain_placement
from mmvideos.cluster.trainjob import (
    build_trainjob,
    export_uri,
    failure_reason,
    job_name,
    pretrain_on_trainjob,
    train_args,
)
from mmvideos.data import storage
from mmvideos.settings import load_params
from mmvideos.stages.pretrain import PretrainConfig
from mmvideos.training.synthetic import write_synthetic_features

CHECKPOINT = "gs://team-data/root/pretrain/abc/checkpoint.pt"


def _placement(accelerators: int = 4) -> dict:
    params = load_params()
    params["cluster"] = dict(params["cluster"], accelerator_count=accelerators, node_selector_value="nvidia-h100-80gb")
    return pretrain_placement(params, "ghcr.io/mmvideos/mmvideos@sha256:" + "0" * 64)


def test_the_trainjob_for_2_nodes_of_4_gpus():
    cfg = PretrainConfig(num_nodes=2, epochs=30, batch_size=1024, device="auto")
    job = build_trainjob(cfg, "gs://team-data/pipeline-root/features", CHECKPOINT, export_uri(CHECKPOINT),
                         _placement(4))
    # what the API server receives, read back through the trainer API models
    job = models.TrainerV1alpha1TrainJob.from_dict(json.loads(json.dumps(job.to_dict())))
    assert (job.api_version, job.kind) == ("trainer.kubeflow.org/v1alpha1", "TrainJob")
    assert job.metadata.name == job_name(job.spec) and len(job.metadata.name) <= 63
    assert job.spec.runtime_ref.name == "torch-distributed"
    trainer = job.spec.trainer
    assert (trainer.num_nodes, trainer.num_proc_per_node) == (2, 4)  # 8 GPUs in all
    assert trainer.image.startswith("ghcr.io/mmvideos/mmvideos@sha256:")
    assert trainer.command == ["torchrun", "-m", "mmvideos.training"]
    args = trainer.args
    assert args[args.index("--resume-from") + 1] == CHECKPOINT
    assert args[args.index("--export-to") + 1] == "gs://team-data/root/pretrain/abc/model"
    assert args[args.index("--features") + 1] == "gs://team-data/pipeline-root/features"
    assert args[args.index("--device") + 1] == "cuda"  # GPU nodes: fail rather than train on the CPU
    assert args[args.index("--batch-size") + 1] == "1024" and "--bf16" in args
    limits = {k: v.actual_instance for k, v in trainer.resources_per_node.limits.items()}
    sized = load_params()["resources"]["pretrain"]
    assert limits == {"cpu": sized["cpu_limit"], "memory": sized["memory_limit"], "nvidia.com/gpu": "4"}
    (patch,) = job.spec.runtime_patches
    (node,) = patch.training_runtime_spec.template.spec.replicated_jobs
    pod = node.template.spec.template.spec
    assert node.name == "node"
    assert pod.node_selector == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    assert [(t.key, t.operator, t.effect) for t in pod.tolerations] == [("nvidia.com/gpu", "Exists", "NoSchedule")]
    assert pod.service_account_name == "mmvideos-trainer"
    assert pod.volumes[0].empty_dir.medium == "Memory" and pod.containers[0].volume_mounts[0].mount_path == "/dev/shm"
    assert job.spec.active_deadline_seconds == sized["timeout_s"]
    # every setting travels as a flag, and the entry point parses them back to the same config
    from mmvideos.training.__main__ import _parse_args

    parsed = _parse_args(["--features", "f", "--out", "o", *train_args(cfg)])
    assert {f.name: getattr(parsed, f.name) for f in dataclasses.fields(cfg)} == dataclasses.asdict(cfg)


def test_pretrain_job_prints_the_trainjob(tmp_path):
    # as `mmvideos pretrain-job --print | kubectl apply -f -` runs it: its own process, whose
    # standard output must hold the TrainJob and nothing else
    features = write_synthetic_features(tmp_path / "features", num_clips=24, val_clips=8)
    done = subprocess.run([sys.executable, "-m", "mmvideos.cli", "pretrain-job", "--features", str(features), "--data-root",
                           str(tmp_path / "root"), "--num-nodes", "4", "--print"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("apiVersion: "), f"--print writes the TrainJob and nothing else: {done.stdout[:300]!r}"
    printed = yaml.safe_load(done.stdout)
    assert printed["kind"] == "TrainJob" and printed["spec"]["trainer"]["numNodes"] == 4
    assert printed["spec"]["trainer"]["numProcPerNode"] == load_params()["cluster"]["accelerator_count"]
    models.TrainerV1alpha1TrainJob.from_dict(printed)


def test_the_job_fails_with_its_own_reason():
    status = {"status": {"conditions": [
        {"type": "Created", "status": "True", "reason": "JobSetCreated", "message": "created"},
        {"type": "Failed", "status": "True", "reason": "FailedJobs",
         "message": "jobset failed: node-1 pod OOMKilled"}]}}
    assert failure_reason(status) == "FailedJobs: jobset failed: node-1 pod OOMKilled"
    assert failure_reason({"status": {"conditions": [{"type": "Complete", "status": "True"}]}}) is None
    assert failure_reason({}) is None


def test_multi_node_pretraining_outside_a_cluster_is_refused_plainly(tmp_path):
    cfg = PretrainConfig(num_nodes=2)
    with pytest.raises(ValueError, match="num_nodes: 1"):
        pretrain_on_trainjob(str(tmp_path), tmp_path / "out", cfg, CHECKPOINT, None)
    with pytest.raises(ValueError, match="gs://"):
        pretrain_on_trainjob(str(tmp_path), tmp_path / "out", cfg, str(tmp_path / "c.pt"), _placement())


# --- the entry point as 2 nodes x 1 process --------------------------------------------------

SETTINGS = PretrainConfig(model="vggish", width_mult=0.0625, epochs=3, batch_size=16, lr=1e-3, shuffle_buffer=1,
                          num_workers=0, device="cpu", val_clips=0, num_nodes=2)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_nodes(features, out, checkpoint, export) -> list[subprocess.Popen]:
    """``torchrun --nnodes 2`` twice, as the TrainJob's two pods would run it (own --out each)."""
    endpoint, run_id = f"127.0.0.1:{_free_port()}", uuid.uuid4().hex[:8]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    nodes = []
    for node in range(2):
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                   "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", run_id, "--max-restarts", "0",
                   "-m", "mmvideos.training", "--features", str(features), "--out", str(out / f"node{node}"),
                   "--resume-from", checkpoint, "--export-to", export, "--no-progress", *train_args(SETTINGS)]
        nodes.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      start_new_session=True))
    return nodes


def _lose(node: subprocess.Popen) -> None:
    """Kill a "node": its torchrun agent and every process under it (torchrun starts each worker
    in a session of its own, so killing the agent's process group would leave the worker running)."""
    import psutil

    agent = psutil.Process(node.pid)
    for process in [*agent.children(recursive=True), agent]:
        process.kill()


def _wait(nodes: list[subprocess.Popen], timeout: float = 300) -> list[int]:
    deadline = time.monotonic() + timeout
    codes = []
    for node in nodes:
        try:
            node.wait(timeout=max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            os.killpg(node.pid, signal.SIGKILL)
            node.wait()
        codes.append(node.returncode)
    return codes


def _weights(export: str) -> dict[str, torch.Tensor]:
    with storage.local_copy(storage.join(export, "model.safetensors")) as path:
        return load_file(path)


@pytest.mark.slow
def test_two_nodes_killed_mid_epoch_resume_to_the_weights_of_an_uninterrupted_run(gcs_bucket, tmp_path):
    features = write_synthetic_features(tmp_path / "features", num_clips=656, val_clips=16)  # 40 steps per epoch
    bucket = gcs_bucket("trainjob-test")

    whole = f"{bucket}/whole"
    nodes = _start_nodes(features, tmp_path / "whole", f"{whole}/checkpoint.pt", f"{whole}/model")
    codes = _wait(nodes)
    assert codes == [0, 0], b"".join(n.stdout.read() for n in nodes).decode()[-3000:]

    broken = f"{bucket}/broken"
    checkpoint = f"{broken}/checkpoint.pt"
    nodes = _start_nodes(features, tmp_path / "first-pods", checkpoint, f"{broken}/model")
    # rank 0 (on either node) writes its local checkpoint, then uploads it: watch the cheap local
    # file, then wait for the upload, and lose node 1 while epoch 2 runs
    local = [tmp_path / "first-pods" / f"node{n}" / "checkpoint.pt" for n in range(2)]
    deadline = time.monotonic() + 300
    while not any(p.exists() for p in local) and time.monotonic() < deadline and nodes[1].poll() is None:
        time.sleep(0.01)
    while not storage.exists(checkpoint) and time.monotonic() < deadline and nodes[1].poll() is None:
        time.sleep(0.01)
    _lose(nodes[1])
    codes = _wait(nodes, timeout=180)
    assert codes[0] != 0 and codes[1] == -signal.SIGKILL  # node 0's job failed with its peer gone
    state = torch.load(io.BytesIO(storage.read_bytes(checkpoint)), weights_only=True)
    assert 1 <= state["epoch"] < SETTINGS.epochs, "the kill came after the run had ended, not mid-run"
    assert not storage.exists(f"{broken}/model/model.safetensors")

    nodes = _start_nodes(features, tmp_path / "second-pods", checkpoint, f"{broken}/model")  # fresh pods
    codes = _wait(nodes)
    assert codes == [0, 0], b"".join(n.stdout.read() for n in nodes).decode()[-3000:]

    expected, resumed = _weights(f"{whole}/model"), _weights(f"{broken}/model")
    assert expected.keys() == resumed.keys()
    for name in expected:
        assert torch.equal(expected[name], resumed[name]), name
    history = json.loads(storage.read_bytes(f"{broken}/model/metrics.json"))
    assert [h["epoch"] for h in history] == [1, 2, 3] and all(h["ranks_in_sync"] for h in history)
    summary = json.loads(storage.read_bytes(f"{broken}/model/summary.json"))
    assert summary["world_size"] == 2 and summary["device"] == "cpu" and summary["gpus"] == 0
