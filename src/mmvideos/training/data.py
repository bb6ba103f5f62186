"""The pre-training data stream (paper section 3, "Training").

Every epoch each training clip gives one sample:

* input: one of its ``n_seconds`` 1-s log-mel frames, drawn at random
  (``[n_seconds, 100, 64]`` -> ``[1, 100, 64]``), the paper's "random 1-second non-overlapping
  segment" augmentation;
* targets: ``ceil(n_visual / 2)`` of the clip's visual labels drawn at random without
  replacement, plus all of its audio labels. The paper keeps "half of the visual labels" of
  clips that have 10, i.e. 5; rounding up (not down) keeps the single label of a clip that has
  one visual label, so no clip loses all its visual supervision.

Determinism. The draws are counter-based: a clip's key is a hash of ``(seed, epoch, clip id)``
(splitmix64 over a 64-bit BLAKE2b of the id), its second is ``key mod n_seconds`` and its visual
labels are those with the smallest ``mix(key, k)`` over their positions ``k``. So the draws do
not depend on which process reads the clip, nor on the order: single-process and distributed
runs give a clip the same segment and labels, and a whole shard's draws are a few vectorised
NumPy operations rather than a generator per clip.

Reading. Pre-training reads packs (:mod:`mmvideos.features.packs`, hundreds of MB each, written
by :mod:`mmvideos.stages.pack`): a reader fetches a pack's member table (offsets, shapes and
per-second digests; one ranged read, checked against the pack table's SHA-256) and the pack's
label rows of the index, then reads only the drawn second of each clip (12,800 bytes of float16,
a ``pread`` of a local pack or a ranged request to a ``gs://`` one) and checks it against its
digest: verification as the bytes are read, nothing fetched or hashed before epoch 1. A process
holds the pack table (O(packs)) and one pack's labels, not the corpus'. Unpacked unit shards
(a synthetic set, with the labels as a dict) are read by walking their tar headers
(:func:`mmvideos.features.store.npy_members`). No ``.npy`` decoding either way. The order is a function of
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

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from mmvideos.features.packs import PackedClip, PackSet, RangeReader
from mmvideos.features.store import ClipMeta, FeatureRecord, ShardFile, clip_meta, npy_members, read_index

#: Whole shards are dealt to readers only if each then holds at least this share of an even split.
BALANCE = 0.9
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def training_shards(features_dir: str | Path, root: str | None = None) -> tuple[list[str], list[int], dict[str, ClipMeta]]:
    """The shards of a features folder that hold training clips (under the data root ``root``),
    how many each holds, and the training clips' labels (from ``index.parquet``)."""
    index = read_index(features_dir, root or "")
    train = index.loc[index["split"] == "train"]
    counts = train.groupby("shard", sort=False).size()
    uris = sorted(counts.index)
    return uris, [int(counts[uri]) for uri in uris], clip_meta(train)


def training_packs(folder: str | Path) -> tuple[list[str], list[int], PackSet]:
    """The packs a pack step wrote to ``folder`` (:mod:`mmvideos.stages.pack`), their training
    clips, and the pack set that reads each pack's labels when the pack is read."""
    packs = PackSet.read(folder)
    return packs.uris, packs.train_counts, packs


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on a uint64 array (wraps modulo 2**64): a bijective 64-bit hash."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def clip_keys(seed: int, epoch: int, clip_ids: list[str]) -> np.ndarray:
    """The uint64 key of each clip's draws in an epoch (independent of reader and order)."""
    ids = np.array([int.from_bytes(hashlib.blake2b(c.encode(), digest_size=8).digest(), "little") for c in clip_ids],
                   dtype=np.uint64)
    base = _mix(_mix(np.array([seed % 2**64], dtype=np.uint64)) ^ np.array([epoch % 2**64], dtype=np.uint64))
    return _mix(ids ^ base)


def draw_seconds(keys: np.ndarray, n_seconds: np.ndarray) -> np.ndarray:
    """Each clip's 1-s segment: ``key mod n_seconds`` (uniform up to a 2**-40 bias)."""
    return (keys % np.asarray(n_seconds, dtype=np.uint64)).astype(np.int64)


def draw_labels(keys: np.ndarray, visual: list[np.ndarray], audio: list[np.ndarray]) -> list[np.ndarray]:
    """Each clip's targets: ``ceil(n_visual / 2)`` of its visual labels drawn without replacement
    (those with the smallest ``mix(key ^ golden * (k + 1))`` over positions ``k``), then every
    audio label; int64, visual first."""
    lengths = np.fromiter((len(v) for v in visual), dtype=np.int64, count=len(visual))
    flat = np.concatenate(visual).astype(np.int64) if len(visual) else np.zeros(0, np.int64)
    owner = np.repeat(np.arange(len(visual)), lengths)
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    position = np.arange(len(flat)) - starts
    priority = _mix(keys[owner] ^ (_GOLDEN * (position + 1).astype(np.uint64)))
    order = np.lexsort((priority, owner))  # grouped by clip (owner) as before, by priority within
    chosen = flat[order][position < ((lengths + 1) // 2)[owner]]  # the first ceil(n / 2) of each clip
    ends = np.cumsum((lengths + 1) // 2)
    return [np.concatenate((v, a)) for v, a in zip(np.split(chosen, ends[:-1]), audio)]


def training_sample(clip: FeatureRecord, seed: int, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """One epoch's sample of a decoded clip, as the stream draws it: (log-mel ``float16 [1, 100, 64]``,
    label indices)."""
    keys = clip_keys(seed, epoch, [clip.clip_id])
    second = int(draw_seconds(keys, [len(clip.mel)])[0])
    labels = draw_labels(keys, [clip.visual], [np.asarray(clip.audio, dtype=np.int64)])[0]
    return clip.mel[second][None].copy(), labels


def collate(samples: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples -> (log-mel ``float16 [B, 1, 100, 64]``, label indices ``int64 [B, L]`` padded with -1).

    Indices rather than multi-hot rows: a batch of 1,024 over 10,998 labels is 11 MB of targets
    dense, a few kB sparse; :func:`multi_hot` expands them on the training device.
    """
    mel = torch.from_numpy(np.stack([m for m, _ in samples]))
    labels = np.full((len(samples), max((len(indices) for _, indices in samples), default=0)), -1, dtype=np.int64)
    for row, (_, indices) in enumerate(samples):
        labels[row, :len(indices)] = indices
    return mel, torch.from_numpy(labels)


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
        meta: the training clips' labels, split and fold (the index), or the :class:`PackSet` of
            packed shards (:func:`training_packs`), which reads a pack's labels with the pack.
        seed: base seed of the order and of the per-clip draws.
        shuffle_buffer: records each reader holds for shuffling; 1 keeps the stream order.
        rank, world_size: this process's place in the distributed job.
    """

    def __init__(self, shard_uris: list[str], train_counts: list[int], meta: dict[str, ClipMeta] | PackSet, seed: int,
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

    def _shards(self, slot: int, slots: int) -> tuple[list[int], int]:
        """This slot's shards (indices) in reading order, and the stride over training clips (1: all)."""
        dealt = self.deal(slots)
        if dealt is not None:
            return dealt[slot], 1
        return self._order(), slots

    def _clips(self, i: int, shard: ShardFile | RangeReader) -> Iterator[PackedClip]:
        """The training clips of shard ``i``: a pack's from its member table, a unit shard's from its tar headers."""
        if isinstance(self.meta, PackSet):
            yield from self.meta.clips(i, shard)
            return
        for clip_id, offset, shape, dtype in npy_members(shard):
            entry = self.meta.get(clip_id)
            if entry is not None and entry.split == "train":
                yield PackedClip(clip_id, offset, shape, dtype, b"", entry)

    def _samples(self, slot: int, slots: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The slot's samples in stream order: per shard, the clips' draws at once, then one read
        of each drawn second into a shared array (a sample is a view of its row); a pack's seconds
        are checked against its digests as they are read."""
        indices, stride = self._shards(slot, slots)
        packed, count = isinstance(self.meta, PackSet), 0
        for i in indices:
            uri = self.shard_uris[i]
            with RangeReader(uri) if packed else ShardFile(uri) as shard:
                clips = []
                for clip in self._clips(i, shard):
                    if count % stride == slot % stride:
                        clips.append(clip)
                    count += 1
                if not clips:
                    continue
                second_shape, dtype = clips[0].shape[1:], clips[0].dtype
                if any(c.shape[1:] != second_shape or c.dtype != dtype for c in clips):
                    raise ValueError(f"{uri}: clips of different frame shapes or types")
                keys = clip_keys(self.seed, self.epoch, [c.clip_id for c in clips])
                seconds = draw_seconds(keys, [c.shape[0] for c in clips]).tolist()
                labels = draw_labels(keys, [c.meta.visual for c in clips], [c.meta.audio for c in clips])
                mel = np.empty((len(clips), 1, *second_shape), dtype=dtype)  # [n, 1, 100, 64]
                flat, size = memoryview(mel.reshape(-1).view(np.uint8)), mel[0].nbytes
                if packed:
                    reads = shard.read_many([(c.offset + s * size, size) for c, s in zip(clips, seconds)])
                    for row, (clip, second, data) in enumerate(zip(clips, seconds, reads)):
                        clip.check(uri, second, data)
                        flat[row * size:(row + 1) * size] = data
                else:
                    for row, (clip, second) in enumerate(zip(clips, seconds)):
                        shard.read_into(flat[row * size:(row + 1) * size], clip.offset + second * size)
            for row in range(len(clips)):
                # a copy of the row: a view held in the shuffle buffer would keep its pack's whole array
                yield (mel[row].copy() if packed else mel[row]), labels[row]

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        slot, slots = self._slot()
        rng = np.random.default_rng([self.seed, self.epoch, slot, 1])
        buffer: list[tuple[np.ndarray, np.ndarray]] = []
        picks = iter(())
        for sample in self._samples(slot, slots):
            buffer.append(sample)
            if len(buffer) >= self.shuffle_buffer:
                # Emit a random element, keeping the buffer full: a streaming shuffle.
                j = next(picks, None)
                if j is None:  # uniform draws in [0, 1), a few thousand at a time
                    picks = iter(rng.random(4096).tolist())
                    j = next(picks)
                j = int(j * len(buffer))
                buffer[j], buffer[-1] = buffer[-1], buffer[j]
                yield buffer.pop()
        rng.shuffle(buffer)
        yield from buffer
