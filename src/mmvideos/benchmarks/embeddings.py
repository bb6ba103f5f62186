"""Clip-level features for the transfer benchmarks, cached on disk.

A clip is decoded with PyAV, resampled to 16 kHz mono, zero-padded to at least one second and
cut into the paper's non-overlapping 1-s log-mel frames (``frames_per_second``: ``[S, 100,
64]``). An :class:`Extractor` turns those frames into one fixed-size vector per clip:

* a network's ``embed`` gives one 128-d embedding per second, pooled over the clip's seconds in
  one of two ways (``POOLINGS``):

  - ``concat`` (the paper's: it "concatenates the 128-dimensional audio embedding features"):
    the clip is first brought to the benchmark's length (5 s for ESC-50, 10 s for TUT and
    AudioSet) by cutting the seconds after it or appending seconds of digital silence, as
    ESC-50 pads its short clips, then the per-second embeddings are concatenated in order
    (``[seconds x 128]``: 640-d for ESC-50, 1,280-d for TUT and AudioSet);
  - ``mean_max``: the mean and the max over seconds (``[256]``), defined for any length and
    invariant to where in the clip an event falls;
* a released model with its own front end (Google's VGGish: 0.96-s examples of the ``vggish``
  log-mel, :func:`mmvideos.evaluation.baselines.vggish_examples`) names it as the extractor's
  ``front_end``, which maps the clip's samples to that model's inputs; ``concat`` then asks the
  front end for the benchmark's length instead of padding paper frames;
* the raw log-mel baseline takes the mean and standard deviation over all 10-ms frames of each
  mel bin (``[128]``).

Cache: ``<cache>/<extractor key>/<benchmark>-<digest of the data root>/<clip_id>-<version>.npy``,
where ``version`` digests the audio file's size and mtime (GCS: size, generation and MD5), so
audio changed at the same path is decoded again; each written atomically (its existence means it
is complete), plus a ``.completed`` marker holding a digest of those names and each file's SHA-256
once every clip is done; a re-run with the same key, root and unchanged clips then reads the
vectors without decoding any audio, each checked against its recorded SHA-256 (a changed file
is deleted and computed again, never used). The key of a network is derived from the SHA-256
of its weights (trained or freshly initialised), so a new checkpoint never reuses stale vectors,
and ends in the pooling (``-concat5s``, ``-mean_max``), so the poolings never share vectors.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mmvideos.data import storage

if TYPE_CHECKING:
    import pandas as pd
    import torch

MARKER = ".completed"
#: How per-second embeddings become one clip vector (module docstring).
POOLINGS = ("concat", "mean_max")


@dataclasses.dataclass(frozen=True)
class Extractor:
    """A named clip featurizer: ``fn(inputs) -> float32 [D]``; ``key`` names its cache.

    ``inputs`` is ``front_end(samples)`` of the clip's 16 kHz samples; None = the paper's 1-s
    frames ``[S, 100, 64]`` (:func:`clip_frames`).
    """

    name: str
    key: str
    fn: Callable[[torch.Tensor], np.ndarray]
    front_end: Callable[[np.ndarray], torch.Tensor] | None = None


def decode_audio(path: str | Path, sample_rate: int | None = None) -> np.ndarray:
    """Decode a local audio file's first audio stream to float32 mono samples at ``sample_rate``
    (default: the log-mel front end's, 16 kHz)."""
    from mmvideos.data import media
    from mmvideos.features.logmel import SAMPLE_RATE

    chunks = list(media.iter_audio(path, sample_rate or SAMPLE_RATE))
    if not chunks:
        raise media.MediaError(f"{path}: no audio samples")
    return np.concatenate(chunks).astype(np.float32) / 32768.0


def load_audio(uri: str) -> np.ndarray:
    """Decode a clip (local path or ``gs://``) to float32 mono samples at 16 kHz."""
    with storage.local_copy(uri) as path:
        return decode_audio(path)


def clip_frames(samples: np.ndarray) -> torch.Tensor:
    """16 kHz samples -> ``[S, 100, 64]`` log-mel frames; clips under 1 s are zero-padded to 1 s."""
    from mmvideos.features.logmel import SAMPLE_RATE, frames_per_second

    if samples.size < SAMPLE_RATE:
        samples = np.pad(samples, (0, SAMPLE_RATE - samples.size))
    return frames_per_second(samples, SAMPLE_RATE)


def silence(seconds: int) -> torch.Tensor:
    """``[seconds, 100, 64]``: the log-mel frames of digital silence, the padding of short clips."""
    from mmvideos.features.logmel import SAMPLE_RATE

    return clip_frames(np.zeros(seconds * SAMPLE_RATE, dtype=np.float32))


def fit_seconds(frames: torch.Tensor, seconds: int) -> torch.Tensor:
    """``[S, 100, 64]`` -> ``[seconds, 100, 64]``: the first ``seconds``, padded with silence."""
    import torch

    if len(frames) >= seconds:
        return frames[:seconds]
    return torch.cat([frames, silence(seconds - len(frames)).to(frames)])


def pool_seconds(per_second: torch.Tensor, pooling: str) -> torch.Tensor:
    """A clip's vector from its per-second embeddings ``[S, E]``: ``concat`` ``[S * E]`` (second by
    second) or ``mean_max`` ``[2 E]``."""
    import torch

    return per_second.reshape(-1) if pooling == "concat" else torch.cat([per_second.mean(0), per_second.amax(0)])


def embedding_extractor(name: str, key: str, embed: Callable[[torch.Tensor], torch.Tensor],
                        device: str | torch.device = "cpu", pooling: str = "mean_max",
                        seconds: int | None = None,
                        front_end: Callable[[np.ndarray, int | None], torch.Tensor] | None = None) -> Extractor:
    """An extractor pooling a network's per-second embeddings (module docstring).

    Args:
        name: the feature set's name (a row of the results).
        key: names the weights; the cache key appends the pooling.
        embed: maps ``[B, 1, 100, 64]`` to ``[B, E]`` (``AudioTagger.embed``), or the front
            end's units to ``[B, E]``.
        device: where ``embed`` runs.
        pooling: ``concat`` (``[seconds x E]``) or ``mean_max`` (``[2 E]``).
        seconds: the clip length ``concat`` pads or cuts to.
        front_end: ``front_end(samples, seconds)`` -> ``[S, T, F]`` model inputs, ``seconds``
            of them under ``concat`` (None there otherwise); None = the paper's 1-s frames.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if pooling == "concat" and not (seconds and seconds > 0):
        raise ValueError("pooling 'concat' needs the benchmark's clip length in seconds")

    def fn(frames: torch.Tensor) -> np.ndarray:
        import torch

        if pooling == "concat" and front_end is None:
            frames = fit_seconds(frames, seconds)
        with torch.inference_mode():
            return pool_seconds(embed(frames[:, None].to(device)).float(), pooling).cpu().numpy()

    tag = f"concat{seconds}s" if pooling == "concat" else pooling
    length = seconds if pooling == "concat" else None
    units = None if front_end is None else functools.partial(front_end, seconds=length)
    return Extractor(name, f"{key}-{tag}", fn, units)


def logmel_stats(frames: torch.Tensor) -> np.ndarray:
    """Mean and standard deviation over time of each mel bin: ``[S, 100, 64] -> [128]``."""
    import torch

    flat = frames.reshape(-1, frames.shape[-1]).double()  # [S * 100, 64]
    return torch.cat([flat.mean(0), flat.std(0, correction=0)]).float().numpy()


#: The raw-feature baseline; bump the key's version if the front end or the statistics change.
LOGMEL_STATS = Extractor("logmel_stats", "logmel-stats-v1", logmel_stats)


def weights_key(checkpoint_dir: str | Path, prefix: str) -> str:
    """``prefix-<first 16 hex of SHA-256(model.safetensors + model.json)>`` of a local checkpoint."""
    digest = hashlib.sha256()
    for name in ("model.safetensors", "model.json"):
        with open(Path(checkpoint_dir) / name, "rb") as fh:
            while block := fh.read(8 << 20):
                digest.update(block)
    return f"{prefix}-{digest.hexdigest()[:16]}"


def module_key(module: torch.nn.Module, prefix: str) -> str:
    """``prefix-<first 16 hex of SHA-256 over the module's state>``: names in-memory weights."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return f"{prefix}-{digest.hexdigest()[:16]}"


def _ids_digest(clip_ids: list[str]) -> str:
    return hashlib.sha256("\n".join(clip_ids).encode()).hexdigest()


def extract(table: pd.DataFrame, extractors: list[Extractor], cache: str | Path, benchmark: str,
            root: str, progress: bool = True) -> dict[str, np.ndarray]:
    """Features of every clip of ``table`` (read from ``root``) for each extractor: ``{name: float32 [N, D]}``.

    Each clip is decoded once for all extractors that still lack it; everything already cached
    is read back instead.
    """
    from mmvideos.data.atomic import atomic_path, write_text
    from mmvideos.progress import progress_bar

    # a clip's vector is named by its id and its file's version (size, mtime or GCS generation):
    # audio rewritten at the same path is decoded again, never answered from the old vectors
    versions = storage.file_versions(table["uri"].tolist())
    clip_ids = [f"{cid}-{hashlib.sha256(versions[uri].encode()).hexdigest()[:12]}"
                for cid, uri in zip(table["clip_id"], table["uri"])]
    digest = _ids_digest(clip_ids)
    root = str(root).rstrip("/") if storage.is_gcs(str(root)) else str(Path(root).resolve())
    place = f"{benchmark}-{hashlib.sha256(root.encode()).hexdigest()[:12]}"
    folders = {e.name: Path(cache) / e.key / place for e in extractors}
    vectors = {e.name: _verified_vectors(folders[e.name], clip_ids, digest) for e in extractors}
    pending = [e for e in extractors if vectors[e.name] is None]
    todo = [(cid, uri) for cid, uri in zip(clip_ids, table["uri"])
            if any(not (folders[e.name] / f"{cid}.npy").is_file() for e in pending)]
    for clip_id, uri in progress_bar(todo, desc=f"{benchmark}: features", unit="clip", disable=not progress):
        samples = load_audio(uri)
        inputs = {}  # front end -> its units of this clip, each computed once
        for extractor in pending:
            target = folders[extractor.name] / f"{clip_id}.npy"
            if not target.is_file():
                front_end = extractor.front_end or clip_frames
                if front_end not in inputs:
                    inputs[front_end] = front_end(samples)  # paper frames: [S, 100, 64]
                buf = io.BytesIO()
                np.save(buf, extractor.fn(inputs[front_end]).astype(np.float32))
                with atomic_path(target) as tmp:
                    tmp.write_bytes(buf.getvalue())
    for extractor in pending:
        data = {cid: (folders[extractor.name] / f"{cid}.npy").read_bytes() for cid in clip_ids}
        record = {"clips": digest, "sha256": {cid: hashlib.sha256(b).hexdigest() for cid, b in data.items()}}
        write_text(json.dumps(record, sort_keys=True), folders[extractor.name] / MARKER)
        vectors[extractor.name] = [np.load(io.BytesIO(data[cid])) for cid in clip_ids]
    return {e.name: np.stack(vectors[e.name]) for e in extractors}


def _verified_vectors(folder: Path, clip_ids: list[str], digest: str) -> list[np.ndarray] | None:
    """The cached vectors of ``clip_ids`` when ``folder``'s marker says all are there (``digest``)
    and each file still has the SHA-256 the marker recorded; else ``None`` (a changed file is
    deleted first, so it is computed again)."""
    try:
        record = json.loads((folder / MARKER).read_text())
    except (FileNotFoundError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("clips") != digest:
        return None
    vectors, whole = [], True
    for cid in clip_ids:
        path = folder / f"{cid}.npy"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            whole = False
            continue
        if hashlib.sha256(data).hexdigest() != record["sha256"].get(cid):
            path.unlink()  # a changed byte: computed again, never used
            whole = False
            continue
        vectors.append(np.load(io.BytesIO(data)))
    return vectors if whole else None
