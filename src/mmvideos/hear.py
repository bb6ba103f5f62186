"""The exported model as a HEAR 2021 API module (https://hearbenchmark.com/hear-api.html).

The Holistic Evaluation of Audio Representations kit (``hear-eval-kit``) and PyPI's
``hearvalidator`` import a module by name and call three functions::

    import mmvideos.hear as hear

    model = hear.load_model("work/latest/models-vggish_fc")          # a torch.nn.Module
    emb, ts = hear.get_timestamp_embeddings(audio, model)             # [n, T, 128], [n, T] (ms)
    scene = hear.get_scene_embeddings(audio, model)                   # [n, 256]

``audio`` is a float32 batch ``[n_sounds, n_samples]`` at ``model.sample_rate`` (16 kHz), on
the model's device. The network hears 1-s windows of the paper's log-mel: a timestamp embedding
is that of the 1-s window centred on the timestamp (the sound zero-padded by half a second at both
ends), every ``hop_ms`` (default 50 ms, the interval HEAR suggests; windows at 500, 1500, ... ms
are exactly the pipeline's non-overlapping seconds). A scene embedding is the mean and the max of
the non-overlapping seconds' embeddings, the transfer step's ``mean_max`` pooling.

Validate with ``hear-validator mmvideos.hear --model work/latest/models-vggish_fc``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mmvideos.encoder import Encoder, load_encoder, pool
from mmvideos.features.presets import SAMPLE_RATE

#: Seconds per window of the network, and its half in samples (the padding at both ends).
_HALF = SAMPLE_RATE // 2


class HearModel(torch.nn.Module):
    """A pretrained encoder with the attributes the HEAR API asks for."""

    sample_rate = SAMPLE_RATE

    def __init__(self, encoder: Encoder, hop_ms: float = 50.0) -> None:
        super().__init__()
        if hop_ms <= 0:
            raise ValueError(f"hop_ms must be positive, got {hop_ms}")
        self.network = encoder.model
        self.encoder = encoder
        self.hop_ms = float(hop_ms)
        self.timestamp_embedding_size = encoder.embedding_size
        self.scene_embedding_size = 2 * encoder.embedding_size

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device


def load_model(model_file_path: str = "", hop_ms: float = 50.0) -> HearModel:
    """The HEAR model of an exported mmvideos model (a pretrain output folder, or its
    ``model.safetensors`` or ``model.json``); a path is required: there are no default weights."""
    if not model_file_path:
        raise ValueError("mmvideos.hear.load_model needs the exported model: a pretrain output folder "
                         "(e.g. work/latest/models-vggish_fc) or its model.safetensors")
    return HearModel(load_encoder(Path(model_file_path)), hop_ms)


def _check(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    if audio.dim() != 2:
        raise ValueError(f"audio must be [n_sounds, n_samples] at {model.sample_rate} Hz, got {tuple(audio.shape)}")
    model.encoder.device = model.device
    return audio.float()


def get_timestamp_embeddings(audio: torch.Tensor, model: HearModel) -> tuple[torch.Tensor, torch.Tensor]:
    """``(embeddings float32 [n, T, E], timestamps float32 [n, T] in ms)``: one embedding every
    ``model.hop_ms`` from 0 to the sound's end, each of the 1-s window centred there."""
    from mmvideos.features.logmel import log_mel

    audio = _check(audio, model)
    count = int(audio.shape[1] / SAMPLE_RATE * 1000 // model.hop_ms) + 1
    timestamps = torch.arange(count, dtype=torch.float64) * model.hop_ms
    starts = torch.round(timestamps * SAMPLE_RATE / 1000).long()  # window start in the padded sound
    padded = torch.nn.functional.pad(audio, (_HALF, _HALF))
    embeddings = []
    for sound in padded:
        windows = torch.stack([sound[s:s + SAMPLE_RATE] for s in starts.tolist()])  # [T, 16000]
        frames = log_mel(windows, SAMPLE_RATE, "paper")  # [T, 100, 64]
        embeddings.append(torch.from_numpy(model.encoder.embed_frames(frames)))
    stacked = torch.stack(embeddings).to(audio.device)
    return stacked, timestamps.float().expand(len(audio), count).contiguous().to(audio.device)


def get_scene_embeddings(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    """``float32 [n, 2E]``: the mean and the max of each sound's per-second embeddings."""
    audio = _check(audio, model)
    vectors = [pool(model.encoder.frames(sound.cpu().numpy(), SAMPLE_RATE), model.encoder) for sound in audio]
    return torch.stack([torch.from_numpy(v) for v in vectors]).to(audio.device)
