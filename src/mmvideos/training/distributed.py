"""Where a training process sits in a (possibly) distributed job, and what ranks exchange.

Under ``torchrun`` (``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` set) every rank joins one process group
(NCCL on CUDA, gloo on CPU); alone, a process is rank 0 of 1 and exchanges nothing.
"""

from __future__ import annotations

import dataclasses
import os

import torch
import torch.distributed as dist
from torch import nn


@dataclasses.dataclass(frozen=True)
class Process:
    """Where this process sits in the (possibly distributed) job."""

    rank: int
    world_size: int
    device: torch.device
    local_rank: int = 0  # the rank on this node: local rank 0 does what each node needs once

    @property
    def main(self) -> bool:
        """Rank 0: the one that validates and writes."""
        return self.rank == 0


def setup_process(device: str) -> Process:
    """Read the ``torchrun`` environment, pick the device, join the process group if needed."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("pretrain.device is cuda but this machine has no usable GPU (torch sees none: no GPU "
                           "requested for the pod, or a driver older than the image's CUDA 12.8 build); set "
                           "device: auto to allow the CPU")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local_rank)
    chosen = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Process(rank, world_size, chosen, local_rank)


def sum_over_ranks(values: list[float], proc: Process) -> list[float]:
    """``values`` summed over every rank (as they are, alone)."""
    if proc.world_size == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=proc.device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def ranks_in_sync(model: nn.Module, proc: Process) -> bool:
    """Whether all ranks hold the same parameters, compared by a float64 (sum, sum of squares)."""
    flat = torch.cat([p.detach().flatten().double() for p in model.parameters()])
    digest = torch.stack([flat.sum(), flat.square().sum()])
    digests = [torch.empty_like(digest) for _ in range(proc.world_size)]
    dist.all_gather(digests, digest)
    return all(torch.equal(d, digest) for d in digests)
