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
("slots"). With at least as many shards as slots each slot streams whole shards (shard
``i`` of the epoch's permutation goes to slot ``i mod R*W``), so every shard is read once. With
fewer shards (a local run) every slot streams all shards and keeps every ``R*W``-th training
record; slots still read disjoint clips. Ranks may hold a different number of samples; the
training loop stops an epoch as soon as any rank runs out, so all ranks take the same steps.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from mmvideos import shards
from mmvideos.features.store import FeatureRecord, decode_record


def iter_split(shard_uris: list[str], split: str) -> Iterator[FeatureRecord]:
    """The clips of ``split`` in ``shard_uris``, in the given shard order."""
    for uri in shard_uris:
        for clip_id, members in shards.iter_shard(uri):
            record = decode_record(clip_id, members)
            if record.split == split:
                yield record


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


def collate(samples: list[tuple[torch.Tensor, np.ndarray]], num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples -> (log-mel ``float16 [B, 1, 100, 64]``, multi-hot targets ``uint8 [B, V]``)."""
    mel = torch.stack([m for m, _ in samples])
    targets = torch.zeros(len(samples), num_classes, dtype=torch.uint8)
    for row, (_, labels) in enumerate(samples):
        targets[row, torch.from_numpy(labels)] = 1
    return mel, targets


def batch_collate(num_classes: int):
    """A picklable ``collate_fn`` for a vocabulary of ``num_classes`` labels."""
    return functools.partial(collate, num_classes=num_classes)


class TrainStream(IterableDataset):
    """One epoch of training samples for this rank (module docstring); call ``set_epoch`` first.

    Args:
        shard_uris: every feature shard (train and val clips may share shards).
        seed: base seed of the order and of the per-clip draws.
        shuffle_buffer: records each reader holds for shuffling; 1 keeps the stream order.
        rank, world_size: this process's place in the distributed job.
    """

    def __init__(self, shard_uris: list[str], seed: int, shuffle_buffer: int,
                 rank: int = 0, world_size: int = 1) -> None:
        super().__init__()
        if shuffle_buffer < 1:
            raise ValueError(f"shuffle_buffer must be >= 1, got {shuffle_buffer}")
        self.shard_uris = list(shard_uris)
        self.seed, self.shuffle_buffer = seed, shuffle_buffer
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and draws ``__iter__`` produces."""
        self.epoch = epoch

    def _slot(self) -> tuple[int, int]:
        info = get_worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        return self.rank * workers + worker, self.world_size * workers

    def _clips(self, slot: int, slots: int) -> Iterator[FeatureRecord]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.shard_uris))
        uris = [self.shard_uris[i] for i in order]
        if len(uris) >= slots:
            yield from iter_split(uris[slot::slots], "train")
            return
        for i, clip in enumerate(iter_split(uris, "train")):
            if i % slots == slot:
                yield clip

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
