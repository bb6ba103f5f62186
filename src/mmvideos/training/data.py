"""The pre-training data stream (paper section 3, "Training").

Every epoch each training clip gives one sample:

* input: one of its ``n_seconds`` 1-s log-mel frames, drawn at random
  (``[n_seconds, 100, 64]`` -> ``[1, 100, 64]``), the paper's "random 1-second non-overlapping
  segment" augmentation;
* targets: ``ceil(n_visual / 2)`` of the clip's visual labels drawn at random without
  replacement, plus all of its audio labels. The paper keeps "half of the visual labels" of
  clips that have 10, i.e. 5; rounding up (not down) keeps the single label of a clip that has
  one visual label, so no clip loses all its visual supervision.

Determinism. The draws for a clip come from a generator seeded by ``(seed, epoch, clip id)``,
so they do not depend on which process reads the clip, nor on the order: single-process and
distributed runs give a clip the same segment and labels. The order is a function of
``(seed, epoch)`` too: the shard list is permuted per epoch, split among the readers, and each
reader passes its records through a seeded shuffle buffer. Nothing reads the global RNGs, so a
run resumed at an epoch boundary sees exactly the batches an uninterrupted run sees.

Readers. With ``R`` ranks and ``W`` data-loader workers per rank there are ``R * W`` readers
("slots"); each builds its own batches, so the number of steps an epoch takes is known in advance
from ``index.parquet`` (:meth:`TrainStream.steps`) and every rank takes that many, with no
per-step agreement between ranks. Where the shards allow it each slot streams whole shards, dealt
out by training clips (largest first, each to the slot holding the fewest so far; ties in the
epoch's random order), every slot getting at least 90% of an even share. Otherwise (fewer shards
than slots, as in a local run, or a few large shards) every slot streams all shards and keeps
every ``R*W``-th training clip, skipping the others without decoding them; slots read disjoint
clips either way. A slot's leftover of less than a
batch sits that epoch out (the shuffle and the next epoch's deal pick other clips to leave).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from mmvideos.features.store import ClipMeta, FeatureRecord, clip_meta, iter_records, read_index


#: Whole shards are dealt to readers only if each then holds at least this share of an even split.
BALANCE = 0.9


def training_shards(features_dir: str | Path) -> tuple[list[str], list[int], dict[str, ClipMeta]]:
    """The shards of a features folder that hold training clips, how many each holds, and the
    training clips' labels (from ``index.parquet``)."""
    index = read_index(features_dir)
    train = index.loc[index["split"] == "train"]
    counts = train.groupby("shard", sort=False).size()
    uris = sorted(counts.index)
    return uris, [int(counts[uri]) for uri in uris], clip_meta(train)


def clip_rng(seed: int, epoch: int, clip_id: str) -> np.random.Generator:
    """The generator of a clip's draws in an epoch (independent of reader and order)."""
    return np.random.default_rng([seed, epoch, zlib.crc32(clip_id.encode())])


def training_labels(visual: np.ndarray, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``ceil(len(visual) / 2)`` visual labels drawn without replacement, plus every audio label."""
    keep = rng.choice(visual, size=(len(visual) + 1) // 2, replace=False) if len(visual) else visual
    return np.union1d(keep, audio).astype(np.int64)


def training_sample(clip: FeatureRecord, seed: int, epoch: int) -> tuple[torch.Tensor, np.ndarray]:
    """One epoch's sample of a clip: (log-mel ``float16 [1, 100, 64]``, label indices)."""
    rng = clip_rng(seed, epoch, clip.clip_id)
    second = int(rng.integers(len(clip.mel)))
    # A copy, so a shuffle buffer holds one second per clip, not the clip's whole array.
    mel = torch.from_numpy(clip.mel[second].copy()).unsqueeze(0)  # [1, 100, 64]
    return mel, training_labels(clip.visual, clip.audio, rng)


def collate(samples: list[tuple[torch.Tensor, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples -> (log-mel ``float16 [B, 1, 100, 64]``, label indices ``int64 [B, L]`` padded with -1).

    Indices rather than multi-hot rows: a batch of 1,024 over 10,998 labels is 11 MB of targets
    dense, a few kB sparse; :func:`multi_hot` expands them on the training device.
    """
    mel = torch.stack([m for m, _ in samples])
    labels = torch.full((len(samples), max((len(l) for _, l in samples), default=0)), -1, dtype=torch.int64)
    for row, (_, indices) in enumerate(samples):
        labels[row, :len(indices)] = torch.from_numpy(indices)
    return mel, labels


def multi_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Padded label indices ``[B, L]`` (-1: none) -> float multi-hot targets ``[B, num_classes]``."""
    targets = torch.zeros(len(labels), num_classes + 1, device=labels.device)
    targets.scatter_(1, labels.masked_fill(labels < 0, num_classes), 1.0)  # padding -> a spare column
    return targets[:, :num_classes]


class TrainStream(IterableDataset):
    """One epoch of training samples for this rank (module docstring); call ``set_epoch`` first.

    Args:
        shard_uris: the shards that hold training clips (:func:`training_shards`).
        train_counts: training clips in each of them, as ``index.parquet`` says.
        meta: the training clips' labels, split and fold (the index).
        seed: base seed of the order and of the per-clip draws.
        shuffle_buffer: records each reader holds for shuffling; 1 keeps the stream order.
        rank, world_size: this process's place in the distributed job.
    """

    def __init__(self, shard_uris: list[str], train_counts: list[int], meta: dict[str, ClipMeta], seed: int,
                 shuffle_buffer: int, rank: int = 0, world_size: int = 1) -> None:
        super().__init__()
        if shuffle_buffer < 1:
            raise ValueError(f"shuffle_buffer must be >= 1, got {shuffle_buffer}")
        if len(shard_uris) != len(train_counts):
            raise ValueError(f"{len(shard_uris)} shards but {len(train_counts)} counts")
        self.shard_uris, self.train_counts, self.meta = list(shard_uris), list(train_counts), meta
        self.seed, self.shuffle_buffer = seed, shuffle_buffer
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and draws ``__iter__`` produces."""
        self.epoch = epoch

    def _order(self) -> list[int]:
        return [int(i) for i in np.random.default_rng([self.seed, self.epoch]).permutation(len(self.shard_uris))]

    def deal(self, slots: int) -> list[list[int]] | None:
        """This epoch's shards (indices) for each slot, in reading order.

        ``None`` when whole shards cannot give every slot at least ``BALANCE`` of an even share
        (fewer shards than slots, or a few large shards): then every slot strides over all clips.
        """
        if len(self.shard_uris) < slots:
            return None
        order = self._order()
        loads, dealt = [0] * slots, [[] for _ in range(slots)]
        for i in sorted(order, key=lambda i: -self.train_counts[i]):  # stable: ties keep the epoch's order
            slot = loads.index(min(loads))
            dealt[slot].append(i)
            loads[slot] += self.train_counts[i]
        if min(loads) < BALANCE * sum(self.train_counts) / slots:
            return None
        position = {i: k for k, i in enumerate(order)}
        return [sorted(shards, key=position.__getitem__) for shards in dealt]

    def slot_sizes(self, slots: int) -> list[int]:
        """Training clips each of ``slots`` readers yields this epoch."""
        dealt = self.deal(slots)
        if dealt is None:
            total = sum(self.train_counts)
            return [total // slots + (slot < total % slots) for slot in range(slots)]
        return [sum(self.train_counts[i] for i in shards) for shards in dealt]

    def steps(self, batch_per_rank: int, workers: int) -> int:
        """Batches every rank yields this epoch with ``workers`` data-loader workers (0: in-process)."""
        per_rank = max(workers, 1)
        sizes = self.slot_sizes(self.world_size * per_rank)
        return min(sum(size // batch_per_rank for size in sizes[rank * per_rank:(rank + 1) * per_rank])
                   for rank in range(self.world_size))

    def _slot(self) -> tuple[int, int]:
        info = get_worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        return self.rank * workers + worker, self.world_size * workers

    def _clips(self, slot: int, slots: int) -> Iterator[FeatureRecord]:
        dealt = self.deal(slots)
        if dealt is not None:
            return iter_records([self.shard_uris[i] for i in dealt[slot]], self.meta, "train")
        uris = [self.shard_uris[i] for i in self._order()]
        return iter_records(uris, self.meta, "train", select=lambda i: i % slots == slot)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, np.ndarray]]:
        slot, slots = self._slot()
        rng = np.random.default_rng([self.seed, self.epoch, slot, 1])
        buffer: list[tuple[torch.Tensor, np.ndarray]] = []
        for clip in self._clips(slot, slots):
            buffer.append(training_sample(clip, self.seed, self.epoch))
            if len(buffer) >= self.shuffle_buffer:
                # Emit a random element, keeping the buffer full: a streaming shuffle.
                j = int(rng.integers(len(buffer)))
                buffer[j], buffer[-1] = buffer[-1], buffer[j]
                yield buffer.pop()
        rng.shuffle(buffer)
        yield from buffer
