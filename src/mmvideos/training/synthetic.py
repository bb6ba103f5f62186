"""A small, learnable feature folder for smoke tests and demos of pre-training.

Every label ``k`` of the vocabulary owns a spectro-temporal pattern: a 3-bin mel band starting
at bin ``5 k`` whose energy is modulated in time at a label-specific rate. A clip has
``visual_per_clip`` visual and ``audio_per_clip`` audio labels; each of its seconds is standard
normal noise plus the patterns of all its labels, so every second carries the evidence of every
label and a small CNN learns the task in a few epochs. With the defaults each label is present
in a quarter of the clips, so a random scorer gets mAP ~ 0.25 and Top-1 = 3 / 12 = 0.25.

The folder has the layout of :mod:`mmvideos.features.store` (written with its encoder); its
shards sit in the folder's own ``shards/`` rather than in a data root.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mmvideos.data.atomic import write_json, write_parquet
from mmvideos.data.dataroot import MANIFEST, MANIFEST_COLUMNS
from mmvideos.data.files import sha256_file
from mmvideos.data.shards import ShardWriter
from mmvideos.features.store import CONFIG, FEATURES, INDEX, VOCABULARY, encode_mel

FRAMES, MEL_BINS = 100, 64


def label_pattern(label: int) -> np.ndarray:
    """The pattern ``float32 [100, 64]`` of a label: a modulated 3-bin band at bin ``5 * label``."""
    if not 0 <= 5 * label <= MEL_BINS - 3:
        raise ValueError(f"label {label} has no band below mel bin {MEL_BINS}")
    t = np.arange(FRAMES, dtype=np.float32)
    envelope = 1.0 + np.cos(2 * np.pi * (1 + label % 4) * t / FRAMES)  # [100], in [0, 2]
    pattern = np.zeros((FRAMES, MEL_BINS), dtype=np.float32)
    pattern[:, 5 * label:5 * label + 3] = 1.5 * envelope[:, None]
    return pattern


def write_synthetic_features(out_dir: str | Path, num_clips: int = 96, val_clips: int = 32,
                             num_visual: int = 8, num_audio: int = 4, visual_per_clip: int = 2,
                             audio_per_clip: int = 1, num_shards: int = 1, seed: int = 0) -> Path:
    """Write a synthetic features folder (module docstring); returns ``out_dir``.

    Args:
        out_dir: destination folder.
        num_clips: clips in all; the last ``val_clips`` of them are the ``val`` split.
        val_clips: validation clips.
        num_visual, num_audio: vocabulary sizes (indices ``0..num_visual-1`` are visual).
        visual_per_clip, audio_per_clip: labels of each modality per clip.
        num_shards: shards the clips are dealt into, round robin.
        seed: seeds the labels, lengths and noise.
    """
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    vocabulary = pd.DataFrame({
        "index": np.arange(num_visual + num_audio),
        "id": [f"v{k}" for k in range(num_visual)] + [f"a{k}" for k in range(num_audio)],
        "name": [f"visual {k}" for k in range(num_visual)] + [f"audio {k}" for k in range(num_audio)],
        "modality": ["visual"] * num_visual + ["audio"] * num_audio,
        "count": 0,
    })
    patterns = np.stack([label_pattern(k) for k in range(len(vocabulary))])  # [V, 100, 64]
    uris = [str((out_dir / "shards" / f"shard-{i:05d}.tar").resolve()) for i in range(num_shards)]
    writers = [ShardWriter(uri) for uri in uris]
    rows = []
    for i in range(num_clips):
        visual = np.sort(rng.choice(num_visual, visual_per_clip, replace=False))
        audio = np.sort(num_visual + rng.choice(num_audio, audio_per_clip, replace=False))
        n_seconds = int(rng.integers(2, 5))
        mel = rng.standard_normal((n_seconds, FRAMES, MEL_BINS), dtype=np.float32)
        mel += patterns[np.concatenate([visual, audio])].sum(0)
        split = "val" if i >= num_clips - val_clips else "train"
        clip_id = f"clip{i:05d}"
        writers[i % num_shards].write(clip_id, encode_mel(mel.astype(np.float16)))
        rows.append({"clip_id": clip_id, "shard": uris[i % num_shards], "n_seconds": n_seconds, "split": split,
                     "fold": i, "visual": visual.tolist(), "audio": audio.tolist()})
        vocabulary.loc[np.concatenate([visual, audio]), "count"] += 1
    for writer in writers:
        writer.close()
    index = pd.DataFrame(rows).sort_values(["shard", "clip_id"], kind="stable")
    write_parquet(index, out_dir / INDEX)
    counts = index.groupby("shard")["n_seconds"].agg(["size", "sum"])
    write_parquet(pd.DataFrame([{"stage": "features", "key": Path(uri).stem, "video_id": "", "file": FEATURES, "uri": uri,
                                 "clips": int(counts.at[uri, "size"]), "seconds": float(counts.at[uri, "sum"]),
                                 "bytes": Path(uri).stat().st_size, "sha256": sha256_file(uri)}
                                for uri in uris], columns=MANIFEST_COLUMNS), out_dir / MANIFEST)
    write_parquet(vocabulary, out_dir / VOCABULARY)
    write_json({"preset": "synthetic", "frames_per_second": FRAMES, "mel_bins": MEL_BINS}, out_dir / CONFIG)
    return out_dir
