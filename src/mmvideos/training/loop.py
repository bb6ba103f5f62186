"""The pre-training loop (paper section 3, "Loss Function" and "Training"); :mod:`mmvideos.stages.pretrain` is the stage.

One readable loop: each epoch every training clip gives one random 1-s log-mel frame with half
its visual labels and all its audio labels (:mod:`mmvideos.training.data`); the loss is the
sigmoid cross-entropy of eq. 1 (``BCEWithLogitsLoss``, mean over the vocabulary and the batch);
Adam at 1e-4 decays x0.9 after every epoch; validation Top-1 and mAP follow every epoch; then a
resumable checkpoint and ``metrics.json`` are written, and after the last epoch the exported
model and ``curves.png``.

The L2 penalty. The paper adds "L2 regularization ... to the loss function" with "penalty ...
set to 1.0". Read literally as ``1.0 * ||w||^2`` on a 73 M-parameter network that term would
dwarf the cross-entropy (which is below 1) and drive every weight to zero, so 1.0 cannot be the
per-weight coefficient. It matches the YouTube-8M/VGGish TensorFlow training code the paper
builds on, where ``regularization_penalty`` (default 1.0) multiplies the summed layer
regularisers ``l2_scale * sum(w^2) / 2`` (``slim.l2_regularizer``, with ``l2_penalty=1e-8`` in
those models). We therefore add ``l2_penalty * l2_scale * sum(w^2) / 2`` over convolution and
linear weights (not biases, not norm parameters, as slim regularises only weights), with
``l2_penalty=1.0`` and ``l2_scale=1e-8``. Its gradient is ``l2_penalty * l2_scale * w``, which is
exactly what ``torch.optim.Adam(weight_decay=l2_penalty * l2_scale)`` adds to the gradient, so
that is how it is implemented (coupled, as in TF's Adam plus a loss term; not AdamW).

Distributed data parallel: under ``torchrun`` (``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` set) the
model is wrapped in DDP (NCCL on CUDA, gloo on CPU), ``batch_size`` is the global batch split
evenly over the ranks, each rank reads disjoint clips, and only rank 0 validates and writes.
BatchNorm statistics are per rank (as in the paper's multi-GPU training); the process group and
what ranks exchange are :mod:`mmvideos.training.distributed`. ``out_dir`` must be a
folder every rank can read, since all ranks resume from its ``checkpoint.pt``.
"""


from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from mmvideos.data import storage
from mmvideos.data.atomic import scratch_dir, write_json, write_parquet
from mmvideos.data.dataroot import DataRoot
from mmvideos.data.files import sha256_file
from mmvideos.data.runrecord import read_summary, write_summary
from mmvideos.features.packs import iter_packed
from mmvideos.features.store import INDEX, read_vocabulary
from mmvideos.training.environment import environment, hardware, trained_on
from mmvideos.models import build_model
from mmvideos.progress import progress_bar
from mmvideos.stages.pack import PackConfig, pack_features
from mmvideos.training.determinism import pin as pin_determinism
from mmvideos.training.checkpoint import (
    CHECKPOINT,
    VOCABULARY,
    CorruptCheckpoint,
    export_model,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from mmvideos.training.config import PretrainConfig
from mmvideos.training.data import TrainStream, collate, multi_hot, training_packs
from mmvideos.training.distributed import Process, ranks_in_sync, setup_process, sum_over_ranks
from mmvideos.training.evaluation import evaluate, plot_curves, write_curves_page

__all__ = ["changed_settings", "checkpoint_uri", "launch", "pretrain"]

log = logging.getLogger(__name__)

#: Steps between loss read-outs for the progress bar (each one waits for the GPU).
POSTFIX_EVERY = 50


def _fit_batch(stream: TrainStream, batch: int, features_dir: str) -> int:
    """The global batch to train with: ``batch``, or less when a rank holds fewer training clips.

    A small source (a folder of a few videos) still trains, on fewer samples per step than asked
    and with a warning, rather than failing after annotation; the summary records the batch used.
    """
    ranks = stream.world_size
    fewest = min(stream.slot_sizes(ranks))  # training clips of the poorest rank, one reader each
    if fewest * ranks >= batch:
        return batch
    if fewest < 1:
        raise ValueError(f"{sum(stream.train_counts)} training clips in {features_dir}: too few to train on {ranks} "
                         "rank(s); give more videos (ingest.val_part decides which videos are validation)")
    log.warning("%d training clips in %s (%d for the rank with the fewest): too few for a batch of %d over %d "
                "rank(s); training with batches of %d", sum(stream.train_counts), features_dir, fewest, batch, ranks,
                fewest * ranks)
    return fewest * ranks


def _fit_workers(stream: TrainStream, batch_per_rank: int, workers: int) -> int:
    """``workers`` data-loader workers, or fewer where each would hold too few clips for its batches.

    Every worker batches its own clips, so more workers leave more clips over at the end of an
    epoch; take the most workers that keep at least 90% of the steps one reader per rank gives.
    """
    best = stream.steps(batch_per_rank, 1)
    for count in range(workers, 1, -1):
        if stream.steps(batch_per_rank, count) >= 0.9 * best:
            return count
    return min(workers, 1)


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Conv and linear weights get the L2 term; biases and norm parameters (1-d) do not."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _prepare(mel: torch.Tensor, proc: Process, channels_last: bool) -> torch.Tensor:
    """``float16 [B, 1, 100, 64]`` batch -> float32 on the device, NHWC when asked."""
    x = mel.to(proc.device, non_blocking=True).float()
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _train_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, proc: Process,
                 cfg: PretrainConfig, num_classes: int, steps: int, progress: bool) -> tuple[float, int]:
    """``steps`` optimisation steps (every rank takes the same number); returns (mean loss, samples over all ranks)."""
    model.train()
    criterion = nn.BCEWithLogitsLoss()  # eq. 1: mean over classes (and over the batch)
    autocast = proc.device.type == "cuda" and cfg.bf16
    channels_last = proc.device.type == "cuda" and cfg.channels_last
    loss_sum, samples = torch.zeros((), device=proc.device), 0  # on the device: no sync per step
    batches = iter(loader)
    bar = progress_bar(total=steps, desc="  steps", unit="step", leave=False, disable=not (progress and proc.main))
    for step in range(1, steps + 1):
        batch = next(batches, None)
        if batch is None:
            raise RuntimeError(f"the training stream ended after {step - 1} of {steps} steps: the feature "
                               "shards do not match their index.parquet")
        mel, labels = batch
        x = _prepare(mel, proc, channels_last)  # [b, 1, 100, 64]
        y = multi_hot(labels.to(proc.device, non_blocking=True), num_classes)  # [b, V]
        with torch.autocast(proc.device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(x)  # [b, V]
        loss = criterion(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(y)
        samples += len(y)
        if step % POSTFIX_EVERY == 0 or step == steps:  # one sync every 50 steps: a NaN stops the run
            _check_finite(loss_sum, step)
        if not bar.disable and (step % POSTFIX_EVERY == 0 or step == steps):
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)  # shown at the bar's next redraw
        bar.update()
    bar.close()
    del batches  # stops the workers of an epoch that left some clips unread
    loss_total, samples = sum_over_ranks([loss_sum.item(), float(samples)], proc)
    return loss_total / max(samples, 1.0), int(samples)


def _check_finite(loss_sum: torch.Tensor, step: int) -> None:
    """Stop on a non-finite loss: no checkpoint or model is written from NaN weights."""
    if not torch.isfinite(loss_sum).item():
        raise FloatingPointError(
            f"pretrain: the training loss became non-finite by step {step} of this epoch; no checkpoint or model "
            "was written from it. Check the feature shards (a corrupt shard), or lower pretrain.lr")


#: Settings that do not change the weights an epoch produces: left out of the checkpoint key, so a
#: run given more epochs (or other workers, another device) continues from the saved state.
_RESUMABLE = ("epochs", "num_workers", "device", "val_clips", "val_every", "num_nodes")


def checkpoint_uri(root: DataRoot, features_dir: str | Path, cfg: PretrainConfig) -> str:
    """Where the resumable state of this training lives in the data root (recorded as the
    ``pretrain`` manifest, so gc keeps it).

    Keyed by the feature index and vocabulary (content) and the settings that shape the
    weights, so a retried or preempted task, a re-run or a run with more epochs finds it.
    """
    digest = hashlib.sha256()
    for name in (INDEX, VOCABULARY):
        with storage.local_copy(storage.join(features_dir, name)) as path:
            digest.update(sha256_file(path).encode())
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _RESUMABLE}
    key = hashlib.sha256(json.dumps({"inputs": digest.hexdigest(), "settings": settings},
                                    sort_keys=True).encode()).hexdigest()
    root.save_manifest("pretrain", pd.DataFrame({"stage": ["pretrain"], "key": [key]}))
    return storage.join(root.unit("pretrain", key), CHECKPOINT)


def _publish(local: Path, uri: str) -> None:
    """Copy a checkpoint to the data root: one object that carries its own SHA-256, written whole
    (a kill or a second publisher leaves one complete checkpoint, from one writer)."""
    storage.put_file(local, uri)


#: The pack table and index every rank reads, under ``out_dir`` (removed after training).
PACKED = "packs"


def pack_root(resume_from: str | None, out_dir: Path) -> DataRoot:
    """Where the training packs are units: the data root of the checkpoint (``<root>/pretrain/<k[:2]>/<k>/
    checkpoint.pt``, :func:`checkpoint_uri`), so they are written once per feature set; without one,
    a root of this run's own under ``out_dir``."""
    parts = str(resume_from or "").rsplit("/", 4)
    if len(parts) == 5 and parts[1] == "pretrain" and parts[3].startswith(parts[2]) and parts[4] == CHECKPOINT:
        return DataRoot(parts[0])
    return DataRoot(out_dir / PACKED / "root")


def _pack(features_dir: str, out_dir: Path, cfg: PretrainConfig, proc: Process, resume_from: str | None,
          data_root: str | None) -> Path:
    """Start-up: rank 0 packs the feature units (reusing the packs of earlier runs), then the first
    rank of every other node writes its own pack table under its own ``out_dir`` (nodes share no
    disk; with a data root every pack is then reused, not written again), and every rank reads its
    node's table: O(packs) rows, no shard fetched or hashed here."""
    packed = out_dir / PACKED

    def pack() -> None:
        pack_features(features_dir, packed, pack_root(resume_from, out_dir), PackConfig(cfg.pack_mb), data_root)

    if proc.main:
        pack()
    if proc.world_size > 1:
        dist.barrier()
        if proc.local_rank == 0 and not proc.main:
            pack()
        dist.barrier()
    return packed


def changed_settings(saved: dict[str, Any], cfg: PretrainConfig) -> dict[str, tuple[Any, Any]]:
    """``{setting: (saved, now)}`` of the result-affecting settings that differ from a checkpoint's."""
    now = dataclasses.asdict(cfg)
    return {k: (saved.get(k), v) for k, v in now.items() if k not in _RESUMABLE and saved.get(k, v) != v}


def pretrain(features_dir: str | Path, out_dir: str | Path, cfg: PretrainConfig = PretrainConfig(),
             progress: bool = True, resume_from: str | None = None, force: bool = False,
             data_root: str | None = None) -> dict[str, Any]:
    """Pre-train ``cfg.model`` on a features folder; resumes from ``out_dir/checkpoint.pt``.

    With ``resume_from`` (a URI in the data root, :func:`checkpoint_uri`) the checkpoint is
    kept there instead: fetched before training when ``out_dir`` has none, replaced after every
    epoch (so a task that starts again on a fresh pod continues from its last epoch), and not
    left in ``out_dir`` at the end.

    Args:
        features_dir: the features stage's output (``index.parquet``, ``vocabulary.parquet``,
            ``shards/``), local or ``gs://``.
        out_dir: local folder for ``checkpoint.pt``, ``model.safetensors``, ``model.json``,
            ``vocabulary.parquet``, ``metrics.json``, ``curves.png``, ``curves.html`` and
            ``summary.json``.
        cfg: hyper-parameters.
        progress: show a progress bar (rank 0).
        force: resume a checkpoint of ``out_dir`` even when result-affecting settings changed
            (they apply from the next epoch); without it that is an error naming them.
        data_root: the data root the feature index names its shards in (the features stage's);
            ``None`` only for a folder whose index names them by absolute URIs (a synthetic set).

    Under ``torchrun`` (``WORLD_SIZE`` > 1) this joins the default process group unless one is
    already initialised; :func:`main` destroys it on exit, other callers own its lifetime.

    Returns:
        The summary (also ``summary.json``): model, epochs, global step, world size, the last
        epoch's metrics and the best validation mAP.
    """
    features_dir, out_dir = str(features_dir), Path(out_dir)
    proc = setup_process(cfg.device)
    if cfg.global_batch % proc.world_size:
        raise ValueError(f"batch_size {cfg.global_batch} is not divisible by {proc.world_size} ranks")
    vocabulary = read_vocabulary(features_dir)
    packed = _pack(features_dir, out_dir, cfg, proc, resume_from, data_root)  # checked as read, not before (stages.pack)
    stream = TrainStream(*training_packs(packed), cfg.seed, cfg.shuffle_buffer, proc.rank, proc.world_size)
    batch = _fit_batch(stream, cfg.global_batch, features_dir)
    per_rank = batch // proc.world_size
    if proc.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick its fastest kernels
    pin_determinism(cfg, proc.device)  # pretrain.deterministic (mmvideos.training.determinism)

    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    model = build_model(cfg.model, len(vocabulary), cfg.width_mult).to(proc.device)
    if proc.device.type == "cuda" and cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    # fused: one kernel per step over all parameters, on the CPU too (the per-tensor loop was ~20% of a CPU step)
    optimizer = torch.optim.Adam(_param_groups(model, cfg.weight_decay), lr=cfg.lr, fused=True)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=cfg.lr_decay)
    torch.manual_seed(cfg.seed + proc.rank)  # rank-local randomness (dropout) differs per rank
    start_epoch, step, history, fetched = 0, 0, [], False
    if resume_from and not (out_dir / CHECKPOINT).exists() and storage.exists(resume_from):
        out_dir.mkdir(parents=True, exist_ok=True)
        with storage.local_copy(resume_from) as path:
            shutil.copyfile(path, out_dir / CHECKPOINT)
        log.info("resuming from %s", resume_from)
        fetched = True
    if (out_dir / CHECKPOINT).exists():
        try:
            state = load_checkpoint(out_dir / CHECKPOINT, name=resume_from if fetched else None)
        except CorruptCheckpoint as error:
            if not fetched:
                raise
            (out_dir / CHECKPOINT).unlink()  # named where it lives, not by this run's copy of it
            raise CorruptCheckpoint(f"{error}; delete {resume_from} to train this model from the start "
                                    "(or restore it)") from None
        changed = changed_settings(state["config"], cfg)
        if changed and not force:
            raise ValueError(f"{out_dir / CHECKPOINT} was trained with other settings that change the result: "
                             + ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changed.items())
                             + "; use another --output folder, restore the settings, or give --force to resume "
                             "with the new ones")
        if state["config"]["model"] != cfg.model or state["config"]["width_mult"] != cfg.width_mult:
            raise ValueError(f"{out_dir / CHECKPOINT} holds a different model: {state['config']}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if changed:
            log.warning("resuming %s with changed settings (--force): %s", out_dir / CHECKPOINT, sorted(changed))
            for group in optimizer.param_groups:  # the new learning rate and decay apply from here on
                group["lr"] = cfg.lr * cfg.lr_decay ** state["epoch"]
            scheduler.gamma = cfg.lr_decay
            optimizer.param_groups[0]["weight_decay"] = cfg.weight_decay  # the weights' group (_param_groups)
        start_epoch, step, history = state["epoch"], state["step"], state["history"]
        if len(state["rng"]) == proc.world_size:  # else a different world size: fresh rank seeds
            set_rng_state(state["rng"][proc.rank])
    network = DistributedDataParallel(model) if proc.world_size > 1 else model

    workers = _fit_workers(stream, per_rank, cfg.num_workers)
    loader = DataLoader(stream, batch_size=per_rank, collate_fn=collate, num_workers=workers, drop_last=True,
                        pin_memory=proc.device.type == "cuda")
    # Validation reads every shard to find its clips: keep a bounded subset in memory instead.
    val_set = list(iter_packed(stream.meta, split="val", limit=cfg.val_clips)) if proc.main and cfg.val_clips else None
    if proc.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_parquet(vocabulary, out_dir / VOCABULARY)
    epochs_bar = progress_bar(total=cfg.epochs, initial=start_epoch, desc="pretrain", unit="epoch",
                              disable=not (progress and proc.main))
    trained: list[tuple[int, float]] = []  # (samples, seconds) of the epochs this run trained
    for epoch in range(start_epoch, cfg.epochs):
        stream.set_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]
        started = time.perf_counter()
        steps = stream.steps(per_rank, workers)
        if steps == 0:
            log.warning("epoch %d: a rank holds fewer training clips than its batch of %d: no step", epoch + 1, per_rank)
        loss, samples = _train_epoch(network, loader, optimizer, proc, cfg, len(vocabulary), steps, progress)
        seconds = time.perf_counter() - started
        trained.append((samples, seconds))
        log.info("epoch %d: %d samples in %.1f s (%.0f samples/s)", epoch + 1, samples, seconds, samples / seconds)
        step += steps
        scheduler.step()
        # the history is a tracked output: what the epoch computed and on which kernels, not how fast
        record = {"epoch": epoch + 1, "step": step, "loss": loss, "lr": lr, "samples": samples,
                  "hardware": hardware(proc.device)}
        if proc.world_size > 1:  # DDP keeps replicas identical; a cheap check that it did
            record["ranks_in_sync"] = ranks_in_sync(model, proc)
        if proc.main and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs):
            val = val_set if val_set is not None else iter_packed(stream.meta, split="val")
            record |= evaluate(model, val, len(vocabulary), per_rank, proc.device, cfg.bf16)
        history.append(record)
        rngs = [rng_state()]
        if proc.world_size > 1:
            rngs = [None] * proc.world_size
            dist.all_gather_object(rngs, rng_state())
        if proc.main:
            save_checkpoint(out_dir / CHECKPOINT, model=model.state_dict(), optimizer=optimizer.state_dict(),
                            scheduler=scheduler.state_dict(), epoch=epoch + 1, step=step, history=history,
                            rng=rngs, config=dataclasses.asdict(cfg), world_size=proc.world_size)
            if resume_from:
                _publish(out_dir / CHECKPOINT, resume_from)
            _export(out_dir, model, cfg, epoch + 1, history, model_files=epoch + 1 == cfg.epochs)
        if proc.world_size > 1:
            dist.barrier()  # the next epoch (or a resuming reader) sees this epoch's files
        epochs_bar.set_postfix({k: f"{record[k]:.4g}" for k in ("loss", "val_top1", "val_map") if k in record},
                               refresh=False)
        epochs_bar.update()
    epochs_bar.close()
    if proc.main and start_epoch >= cfg.epochs:  # resumed a finished run: its outputs, into this folder
        _export(out_dir, model, cfg, start_epoch, history)
    if resume_from and proc.main:  # the resumable state lives in the data root, not beside the model
        (out_dir / CHECKPOINT).unlink(missing_ok=True)
    if proc.main:  # the pack table is start-up state, not an output
        shutil.rmtree(packed, ignore_errors=True)

    summary = {"model": cfg.model, "width_mult": cfg.width_mult, "epochs": cfg.epochs, "global_step": step,
               "device": proc.device.type, "device_asked": cfg.device, "hardware": trained_on(history, proc.device),
               "gpus": proc.world_size if proc.device.type == "cuda" else 0, "world_size": proc.world_size, "batch_size": batch, "num_classes": len(vocabulary),
               "train_clips": sum(stream.train_counts), "num_workers": workers, "final": history[-1] if history else {},
               "best_val_map": max((h["val_map"] for h in history if "val_map" in h), default=None),
               "val_note": (history[-1] if history else {}).get("val_note"),
               # how this run went (run.json beside the summary, not tracked): epochs it trained, time, rate
               "epochs_trained": len(trained), "seconds": round(sum(s for _, s in trained), 2),
               "train_samples_per_s": round(sum(n for n, _ in trained) / max(sum(s for _, s in trained), 1e-9), 1)}
    if proc.main:
        write_summary(summary, out_dir)
        write_json(environment(summary["hardware"]), out_dir / "environment.json")
    return summary


def _export(out_dir: Path, model: nn.Module, cfg: PretrainConfig, epoch: int, history: list[dict],
            model_files: bool = True) -> None:
    """The history after ``epoch`` (``metrics.json``), and with ``model_files`` the exported model
    and the plots: written once, after the last epoch, since the checkpoint is what a stopped run
    resumes from (matplotlib costs about a second a figure, the weights a write and a hash)."""
    write_json(history, out_dir / "metrics.json")
    if model_files:
        export_model(out_dir, model, cfg.model, cfg.width_mult, epoch, cfg.seed)
        write_curves_page(history, plot_curves(history, out_dir / "curves.png"), out_dir / "curves.html")


def launch(features_dir: str | Path, out_dir: str | Path, cfg: PretrainConfig = PretrainConfig(),
           nproc: int | None = None, progress: bool = True, resume_from: str | None = None,
           force: bool = False, data_root: str | None = None) -> dict[str, Any]:
    """:func:`pretrain` on every GPU of this machine: one process per GPU under torchrun.

    ``nproc`` defaults to the visible CUDA devices (1 with ``device: cpu`` or without a GPU); with
    one process, or inside a distributed job already, this is :func:`pretrain` itself. Otherwise
    ``python -m torch.distributed.run --standalone --nproc_per_node=nproc -m mmvideos.training`` runs
    with ``cfg`` and the summary is read back from ``out_dir``. A Kubeflow pod sees the GPUs its
    task asked for (``cluster.accelerator_count``), so the pretrain task uses them all.
    """
    if nproc is None:
        gpus = torch.cuda.device_count() if cfg.device != "cpu" else 1
        nproc = max(n for n in range(1, max(gpus, 1) + 1) if cfg.global_batch % n == 0)
        if nproc < gpus:
            log.warning("batch %d does not split over %d GPUs: training on %d", cfg.global_batch, gpus, nproc)
    if nproc <= 1 or dist.is_initialized() or "WORLD_SIZE" in os.environ:
        return pretrain(features_dir, out_dir, cfg, progress, resume_from, force, data_root)
    with scratch_dir("launch") as tmp:
        params = Path(tmp) / "params.yaml"
        params.write_text(yaml.safe_dump({"pretrain": dataclasses.asdict(cfg)}))
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                   "-m", "mmvideos.training", "--features", str(features_dir), "--out", str(out_dir),
                   "--params", str(params), *([] if progress else ["--no-progress"]),
                   *(["--resume-from", resume_from] if resume_from else []), *(["--force"] if force else []),
                   *(["--data-root", data_root] if data_root else [])]
        log.info("pretraining on %d processes: %s", nproc, " ".join(command))
        subprocess.run(command, check=True)
    return read_summary(out_dir)
