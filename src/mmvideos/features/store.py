"""The feature folder: log-mel shards with their labels, and its streaming reader.

The ``features`` stage (:func:`mmvideos.features.extract.extract_features`) is the one writer of
this folder; pre-training and the report read it through :func:`iter_features`.

Layout (a local folder or a ``gs://`` prefix)::

    shards/shard-XXXXX.tar   one per audio shard of the clip folder (same name: a fold range)
        <clip_id>.npy        float16 [n_seconds, frames, 64] log-mel: one slice per
                             non-overlapping 1-s frame of the clip (frames = 100 with the
                             ``paper`` preset); NumPy .npy format, C order, little-endian
        <clip_id>.json       {"visual": [vocab indices], "audio": [vocab indices],
                              "split": "train" | "val", "fold": int}
    index.parquet            clip_id (str), shard (str, e.g. "shard-00000"), n_seconds (int),
                             split (str), fold (int); one row per clip, in shard order
    vocabulary.parquet       merge_labels' vocabulary, copied: index (0..V-1), id, name,
                             modality, count; the json's indices point into it
    config.json              the front end: preset, sample_rate, window (samples and type),
                             hop, n_fft, mel_bins, fmin/fmax, log_offset, pad, frames_per_second
    summary.json             clips, audio seconds, throughput, skipped clips

Label indices keep the order of the label table (annotator rank). A clip's seconds are
transformed independently (each 1-s frame is reflect-padded on its own), so any single slice
``mel[k]`` is exactly what a model sees at training time; a trailing partial second is dropped
and clips under one second are left out. Members of one clip are contiguous in its shard, so a
shard streams front to back with one clip in memory at a time; shards are deterministic
(byte-identical when the stage is re-run on the same input).
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

SHARDS = "shards"
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


def encode_record(record: FeatureRecord) -> dict[str, bytes]:
    """A record -> its shard members ``{"npy": ..., "json": ...}`` (deterministic bytes)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(record.mel, dtype="<f2"), allow_pickle=False)
    meta = {"visual": [int(i) for i in record.visual], "audio": [int(i) for i in record.audio],
            "split": record.split, "fold": int(record.fold)}
    return {"npy": buf.getvalue(), "json": json.dumps(meta, sort_keys=True).encode()}


def decode_record(clip_id: str, members: dict[str, bytes], meta: dict | None = None) -> FeatureRecord:
    """Shard members of one clip (and its parsed ``json`` member, if at hand) -> a :class:`FeatureRecord`."""
    meta = json.loads(members["json"]) if meta is None else meta
    return FeatureRecord(
        clip_id=clip_id,
        mel=np.load(io.BytesIO(members["npy"]), allow_pickle=False),
        visual=np.asarray(meta["visual"], dtype=np.int64),
        audio=np.asarray(meta["audio"], dtype=np.int64),
        split=meta["split"],
        fold=int(meta["fold"]),
    )


def list_feature_shards(features_dir: str | Path) -> list[str]:
    """Sorted URIs of a feature folder's shards."""
    return shards.list_shards(storage.join(features_dir, SHARDS))


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
    """Stream the clips of a feature folder (local or ``gs://``), one shard at a time.

    Args:
        features_dir: the ``features`` stage's output folder.
        split: ``"train"`` or ``"val"`` to keep only that split (shards without a clip of it,
            according to ``index.parquet``, are not opened); ``None`` for every clip.
        shuffle_shards_seed: visit the shards in an order permuted by this seed (clips keep
            their order within a shard); ``None`` visits them in name order.
        limit: stop after this many clips (0: no limit).

    Yields:
        :class:`FeatureRecord` objects; only the current clip is held in memory.
    """
    uris = list_feature_shards(features_dir)
    if split is not None:
        index = read_index(features_dir)
        wanted = set(index.loc[index["split"] == split, "shard"])
        uris = [u for u in uris if shards.stem(u) in wanted]
    if shuffle_shards_seed is not None:
        order = np.random.default_rng(shuffle_shards_seed).permutation(len(uris))
        uris = [uris[i] for i in order]
    records = iter_records(uris, split)
    yield from itertools.islice(records, limit) if limit else records


def iter_records(shard_uris: list[str], split: str | None = None,
                 select: Callable[[int], bool] | None = None) -> Iterator[FeatureRecord]:
    """The clips of ``split`` (``None``: all) in ``shard_uris``, in order, decoding only those kept.

    A clip's split is read from its small ``json`` member before its log-mel array is decoded,
    and ``select(i)``, when given, keeps the ``i``-th clip of the split (counted from 0 over all
    the shards): readers that share shards skip each other's clips without decoding them.
    """
    i = 0
    for uri in shard_uris:
        for clip_id, members in shards.iter_shard(uri):
            meta = json.loads(members["json"])
            if split is not None and meta["split"] != split:
                continue
            if select is None or select(i):
                yield decode_record(clip_id, members, meta)
            i += 1
