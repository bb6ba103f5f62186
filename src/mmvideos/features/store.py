"""The feature folder: an index of log-mel shards (in the data root) with the labels, and its reader.

The ``features`` stage (:func:`mmvideos.features.extract.extract_features`) is the one writer;
pre-training, the report and the benchmarks read it through :func:`iter_features`.

Feature shards live in the data root, one per clip unit (a video's clips), keyed by the audio
shard's content and the front end (:mod:`mmvideos.dataroot`)::

    features/<k[:2]>/<k>/features.tar   <clip_id>.npy  float16 [n_seconds, frames, 64] log-mel:
                                        one slice per non-overlapping 1-s frame (frames = 100
                                        with the ``paper`` preset); NumPy .npy, little-endian

The feature folder (a KFP artifact, a DVC out) holds only tables::

    index.parquet            clip_id, shard (URI of its features.tar), n_seconds, split, fold,
                             visual, audio (int vocabulary indices, in the label table's order)
    manifest.parquet         the feature shards (mmvideos.dataroot.MANIFEST_COLUMNS)
    vocabulary.parquet       merge_labels' vocabulary, copied: index (0..V-1), id, name,
                             modality, count; the label indices point into it
    config.json              the front end: preset, sample_rate, window (samples and type),
                             hop, n_fft, mel_bins, fmin/fmax, log_offset, pad, frames_per_second
    summary.json             clips, audio seconds, skipped clips, shards reused and computed

Labels are not in the shards, so new labels reuse every feature shard. A clip's seconds are
transformed independently (each 1-s frame is reflect-padded on its own), so any single slice
``mel[k]`` is exactly what a model sees at training time; a trailing partial second is dropped
and clips under one second are left out. Shards are deterministic (byte-identical when the stage
is re-run on the same input).
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from mmvideos import shards, storage

FEATURES = "features.tar"
INDEX = "index.parquet"
VOCABULARY = "vocabulary.parquet"
CONFIG = "config.json"


@dataclasses.dataclass(frozen=True)
class FeatureRecord:
    """One clip of the feature folder.

    Attributes:
        clip_id: the clip stage's id (``<video_id>-<k>``).
        mel: float16 ``[n_seconds, 100, 64]`` log-mel, one slice per 1-s frame.
        visual: int64 vocabulary indices of the clip's visual labels.
        audio: int64 vocabulary indices of the clip's audio labels.
        split: ``"train"`` or ``"val"``.
        fold: the video's fold (``hash(video id) mod num_folds``).
    """

    clip_id: str
    mel: np.ndarray
    visual: np.ndarray
    audio: np.ndarray
    split: str
    fold: int


@dataclasses.dataclass(frozen=True)
class ClipMeta:
    """What the index says of one clip: its labels, split and fold."""

    visual: np.ndarray
    audio: np.ndarray
    split: str
    fold: int


def encode_mel(mel: np.ndarray) -> dict[str, bytes]:
    """A clip's log-mel -> its shard member ``{"npy": ...}`` (deterministic bytes)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(mel, dtype="<f2"), allow_pickle=False)
    return {"npy": buf.getvalue()}


def decode_record(clip_id: str, members: dict[str, bytes], meta: ClipMeta) -> FeatureRecord:
    """Shard members of one clip and its index entry -> a :class:`FeatureRecord`."""
    return FeatureRecord(clip_id=clip_id, mel=np.load(io.BytesIO(members["npy"]), allow_pickle=False),
                         visual=meta.visual, audio=meta.audio, split=meta.split, fold=meta.fold)


def clip_meta(index: pd.DataFrame) -> dict[str, ClipMeta]:
    """``{clip_id: ClipMeta}`` of an index table."""
    return {c: ClipMeta(np.asarray(v, dtype=np.int64), np.asarray(a, dtype=np.int64), str(s), int(f))
            for c, v, a, s, f in zip(index["clip_id"], index["visual"], index["audio"], index["split"], index["fold"])}


def read_index(features_dir: str | Path) -> pd.DataFrame:
    """The clip index (``index.parquet``) of a feature folder."""
    with storage.local_copy(storage.join(features_dir, INDEX)) as path:
        return pd.read_parquet(path)


def read_vocabulary(features_dir: str | Path) -> pd.DataFrame:
    """The label vocabulary (``index, id, name, modality, count``) the label indices point into."""
    with storage.local_copy(storage.join(features_dir, VOCABULARY)) as path:
        return pd.read_parquet(path)


def read_feature_config(features_dir: str | Path) -> dict:
    """The front-end settings the features were computed with (``config.json``)."""
    with storage.local_copy(storage.join(features_dir, CONFIG)) as path:
        return json.loads(Path(path).read_text())


def iter_features(features_dir: str | Path, split: str | None = None,
                  shuffle_shards_seed: int | None = None, limit: int = 0) -> Iterator[FeatureRecord]:
    """Stream the clips of a feature folder (shards local or ``gs://``), one shard at a time.

    Args:
        features_dir: the ``features`` stage's output folder.
        split: ``"train"`` or ``"val"`` to keep only that split (shards without a clip of it are
            not opened); ``None`` for every clip.
        shuffle_shards_seed: visit the shards in an order permuted by this seed (clips keep
            their order within a shard); ``None`` visits them in index order.
        limit: stop after this many clips (0: no limit).

    Yields:
        :class:`FeatureRecord` objects; only the current clip is held in memory.
    """
    index = read_index(features_dir)
    if split is not None:
        index = index[index["split"] == split]
    uris = list(dict.fromkeys(index["shard"]))
    if shuffle_shards_seed is not None:
        order = np.random.default_rng(shuffle_shards_seed).permutation(len(uris))
        uris = [uris[i] for i in order]
    records = iter_records(uris, clip_meta(index), split)
    yield from itertools.islice(records, limit) if limit else records


def iter_records(shard_uris: list[str], meta: dict[str, ClipMeta], split: str | None = None,
                 select: Callable[[int], bool] | None = None) -> Iterator[FeatureRecord]:
    """The indexed clips of ``split`` (``None``: all) in ``shard_uris``, in order, decoding only those kept.

    A clip is kept when ``meta`` (the index) names it with that split, and ``select(i)``, when
    given, keeps the ``i``-th such clip (counted from 0 over all the shards): readers that share
    shards skip each other's clips without decoding them. Every shard must hold every clip the
    index places in it; a missing one raises ``ValueError``.
    """
    i = 0
    for uri in shard_uris:
        for clip_id, members in shards.iter_shard(uri):
            entry = meta.get(clip_id)
            if entry is None or (split is not None and entry.split != split):
                continue
            if select is None or select(i):
                yield decode_record(clip_id, members, entry)
            i += 1
