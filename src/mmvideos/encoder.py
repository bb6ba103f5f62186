"""The pretrained audio encoder, for one's own audio.

The product of the paper is an audio encoder: a network that maps each second of sound to a
128-d embedding. :func:`load_encoder` reads an exported model (a pretrain output folder:
``model.safetensors`` + ``model.json``) and gives an :class:`Encoder`::

    import mmvideos

    encoder = mmvideos.load_encoder("work/latest/models-vggish_fc")
    seconds = encoder.embed(waveform, sample_rate)        # [S, 128]: one row per second of audio
    clip = encoder.clip_embedding(waveform, sample_rate)  # [256]: mean and max over the seconds

The waveform is resampled to 16 kHz and cut into the paper's non-overlapping 1-s log-mel frames
(a final partial second is dropped; audio under 1 s is zero-padded to 1 s), exactly as the
pipeline's transfer step does: the embeddings are the ones its classifiers see
(:mod:`mmvideos.benchmarks.embeddings`). ``mmvideos embed`` runs this over files and folders;
:mod:`mmvideos.hear` wraps it in the HEAR 2021 API.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmvideos.features.presets import SAMPLE_RATE

if TYPE_CHECKING:
    import pandas as pd
    import torch

#: Seconds embedded per forward pass (bounds the memory of an hour-long file).
BATCH_SECONDS = 256


@dataclasses.dataclass
class Encoder:
    """A pretrained network that embeds audio one second at a time (module docstring)."""

    model: Any  # mmvideos.models.AudioTagger, in eval mode
    card: dict  # model.json
    device: Any  # torch.device

    @property
    def embedding_size(self) -> int:
        """Size of one second's embedding (128 for every architecture of the paper)."""
        return int(self.model.embedding_dim)

    def frames(self, waveform, sample_rate: int) -> torch.Tensor:
        """``[S, 100, 64]`` log-mel frames of a mono (or ``[channels, samples]``, averaged) waveform."""
        import torch
        import torchaudio.functional

        from mmvideos.benchmarks.embeddings import clip_frames

        wave = torch.as_tensor(np.asarray(waveform, dtype=np.float32))
        if wave.dim() == 2:
            wave = wave.mean(0)
        if wave.dim() != 1:
            raise ValueError(f"expected a mono waveform [samples] or [channels, samples], got {tuple(wave.shape)}")
        if int(sample_rate) != SAMPLE_RATE:
            wave = torchaudio.functional.resample(wave, int(sample_rate), SAMPLE_RATE)
        return clip_frames(wave.numpy())

    def embed(self, waveform, sample_rate: int) -> np.ndarray:
        """Per-second embeddings ``float32 [S, embedding_size]`` (S = whole seconds, at least 1)."""
        return self.embed_frames(self.frames(waveform, sample_rate))

    def embed_frames(self, frames: torch.Tensor) -> np.ndarray:
        """Per-second embeddings of ``[S, 100, 64]`` log-mel frames."""
        import torch

        with torch.inference_mode():
            parts = [self.model.embed(frames[i:i + BATCH_SECONDS, None].to(self.device)).float().cpu()
                     for i in range(0, len(frames), BATCH_SECONDS)]
        return torch.cat(parts).numpy() if parts else np.zeros((0, self.embedding_size), np.float32)

    def clip_embedding(self, waveform, sample_rate: int, pooling: str = "mean_max",
                       seconds: int | None = None) -> np.ndarray:
        """One vector per clip, pooled as the transfer step pools (``transfer.pooling``):
        ``mean_max`` (``[2 x 128]``, any length) or ``concat`` (``[seconds x 128]``: the clip cut
        or padded with silence to ``seconds``, e.g. 5 for ESC-50)."""
        return pool(self.frames(waveform, sample_rate), self, pooling, seconds)


def pool(frames: torch.Tensor, encoder: Encoder, pooling: str = "mean_max", seconds: int | None = None) -> np.ndarray:
    """The clip vector of ``frames`` by the transfer step's own extractor (the same code path)."""
    from mmvideos.benchmarks.embeddings import embedding_extractor

    extractor = embedding_extractor("encoder", "encoder", encoder.model.embed, encoder.device, pooling, seconds)
    return extractor.fn(frames)


def load_encoder(path: str | Path, device: str = "cpu") -> Encoder:
    """The encoder of an exported model: a pretrain output folder (``model.safetensors`` and
    ``model.json``, e.g. ``work/latest/models-vggish_fc``), or either file in it. The weights are
    checked against the SHA-256 written with them."""
    import torch

    from mmvideos.training.checkpoint import MODEL_CARD, load_model

    folder = Path(path)
    folder = folder if folder.is_dir() else folder.parent
    if not (folder / MODEL_CARD).is_file():
        raise FileNotFoundError(f"{path}: no exported model here (a pretrain output folder holds model.safetensors "
                                f"and {MODEL_CARD}; after `mmvideos run`: work/latest/models-<arch>)")
    return Encoder(load_model(folder, device), json.loads((folder / MODEL_CARD).read_text()), torch.device(device))


def audio_files(paths: list[str | Path]) -> list[Path]:
    """The files named, and every file under the folders named (sorted; hidden files skipped):
    whatever PyAV decodes is embedded, the rest is reported by :func:`embed_files`."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return found


def embed_files(files: list[Path], encoder: Encoder, pooling: str = "mean_max", seconds: int | None = None,
                progress: bool = True) -> tuple[pd.DataFrame, dict[str, str]]:
    """Embed each file's first audio stream (decoded and resampled to 16 kHz as the pipeline's
    transfer step does). Returns one row per file (``path``, ``seconds``, ``clip_embedding``
    ``[D]``, ``second_embeddings`` ``[S][128]``) and ``{path: why}`` for the files not embedded."""
    import pandas as pd
    import torch

    from mmvideos.benchmarks.embeddings import clip_frames, decode_audio, pool_seconds
    from mmvideos.data.media import MediaError
    from mmvideos.progress import progress_bar

    rows, failed = [], {}
    for path in progress_bar(files, desc="embed", unit="file", disable=not progress):
        try:
            frames = clip_frames(decode_audio(path))
        except (MediaError, OSError, ValueError) as exc:
            failed[str(path)] = " ".join(str(exc).split()) or type(exc).__name__
            continue
        per_second = encoder.embed_frames(frames)
        # mean_max pools these very seconds; concat first fits the clip to `seconds` (padding with silence)
        clip = (pool_seconds(torch.from_numpy(per_second), pooling).numpy() if pooling == "mean_max"
                else pool(frames, encoder, pooling, seconds))
        rows.append({"path": str(path), "seconds": len(frames), "clip_embedding": clip,
                     "second_embeddings": list(per_second)})
    return pd.DataFrame(rows, columns=["path", "seconds", "clip_embedding", "second_embeddings"]), failed


def write_embeddings(table: pd.DataFrame, output: Path) -> list[Path]:
    """Write :func:`embed_files`'s table: ``.parquet`` (the table) or ``.npy`` (the clip
    embeddings ``[N, D]``, plus ``<stem>.seconds.npy`` ``[sum S, 128]`` and ``<stem>.files.csv``
    naming each row's file and its first row in the per-second array). Returns the files written."""
    from mmvideos.data.atomic import atomic_path, write_parquet, write_text

    if output.suffix == ".parquet":
        write_parquet(table.assign(clip_embedding=table["clip_embedding"].map(list),
                                   second_embeddings=table["second_embeddings"].map(lambda rows: [list(r) for r in rows])),
                      output)
        return [output]
    if output.suffix != ".npy":
        raise ValueError(f"--output {output}: name a .parquet or a .npy file")
    written = [output, output.with_suffix(".seconds.npy"), output.with_suffix(".files.csv")]
    width = len(table["clip_embedding"].iloc[0]) if len(table) else 0
    clips = np.stack(table["clip_embedding"].tolist()) if len(table) else np.zeros((0, width), np.float32)
    seconds = (np.concatenate([np.stack(r) for r in table["second_embeddings"]]) if len(table)
               else np.zeros((0, 0), np.float32))
    for array, target in zip((clips, seconds), written):
        with atomic_path(target) as tmp, open(tmp, "wb") as fh:
            np.save(fh, array.astype(np.float32))
    first = np.concatenate([[0], np.cumsum(table["seconds"].to_numpy())[:-1]]).astype(int) if len(table) else []
    write_text(table[["path", "seconds"]].assign(first_second_row=first).to_csv(index=False), written[2])
    return written
