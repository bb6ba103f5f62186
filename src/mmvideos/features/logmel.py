"""The log-mel front end shared by the audio annotator, the features stage and the models.

Three presets, all at 16 kHz with a 25 ms (400-sample) window, a 10 ms (160-sample) hop, the
magnitude of a 512-point real FFT and 64 HTK mel bands between 125 and 7500 Hz whose triangles
are linear in mel (the matrix of VGGish's ``mel_features.py``, DC row zeroed):

* ``vggish``: periodic Hann window, ``log(mel + 0.01)``, no padding: a waveform of ``n``
  samples gives ``1 + (n - 400) // 160`` frames.
* ``yamnet``: the same with ``log(mel + 0.001)``.
* ``paper``: the paper's settings (section 3): periodic Hamming window, ``log(mel + 0.01)``.
  Framing: the waveform is reflect-padded by 120 samples at each end, so frame ``k`` covers
  samples ``[160 k - 120, 160 k + 280)`` and is centred on the ``k``-th 10 ms slot
  ``[160 k, 160 k + 160)``.  A waveform of ``n`` samples then gives exactly ``n // 160``
  frames: 100 per 16,000-sample second, which is the paper's 100x64 input.

``frames_per_second`` cuts audio into non-overlapping 1-s frames *before* the transform, so a
frame's spectrogram depends on its own second only (the training sampler draws single seconds);
a trailing partial second is dropped.

On the CPU the frames go through in cache-sized blocks and only the FFT bins inside the mel band
are used (:func:`_log_mel_cpu`); on a GPU it is batched torch on the input's device. Both give
the same numbers as librosa's STFT with the same window and mel matrix (``mmvideos bench``
compares them). Other sample rates are resampled to 16 kHz with
``torchaudio.functional.resample`` first.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from mmvideos.features.presets import (FMAX, FMIN, FRAMES_PER_SECOND, HOP, N_FFT, N_MELS, PRESETS, SAMPLE_RATE,
                                       WINDOW, Preset, num_frames)

def hertz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale: ``1127 ln(1 + f / 700)``."""
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


@functools.lru_cache(maxsize=None)
def mel_matrix(n_fft: int = N_FFT, n_mels: int = N_MELS, sample_rate: int = SAMPLE_RATE,
               fmin: float = FMIN, fmax: float = FMAX) -> np.ndarray:
    """The ``[n_fft // 2 + 1, n_mels]`` float64 mel weights of VGGish/YAMNet.

    Triangles are linear in mel (not Hz), bin frequencies are ``linspace(0, nyquist, bins)``
    and the DC bin gets no weight, as in ``mel_features.spectrogram_to_mel_matrix``.
    """
    bins_mel = hertz_to_mel(np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1))  # [bins]
    edges = np.linspace(hertz_to_mel(fmin), hertz_to_mel(fmax), n_mels + 2)  # [n_mels + 2]
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]  # [n_mels] each
    rising = (bins_mel[:, None] - lower) / (centre - lower)
    falling = (upper - bins_mel[:, None]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))  # [bins, n_mels]
    weights[0, :] = 0.0
    return weights


def _window(kind: str, device: torch.device) -> torch.Tensor:
    make = torch.hann_window if kind == "hann" else torch.hamming_window
    return make(WINDOW, periodic=True, dtype=torch.float32, device=device)


def _as_tensor(waveform) -> torch.Tensor:
    if isinstance(waveform, np.ndarray):
        waveform = torch.from_numpy(np.ascontiguousarray(waveform))
    return waveform.to(torch.float32)


def _resample(wave: torch.Tensor, sample_rate: int) -> torch.Tensor:
    if sample_rate == SAMPLE_RATE:
        return wave
    import torchaudio.functional

    return torchaudio.functional.resample(wave, sample_rate, SAMPLE_RATE)


def log_mel(waveform, sample_rate: int = SAMPLE_RATE, preset: str = "paper") -> torch.Tensor:
    """Log-mel spectrogram of mono audio.

    Args:
        waveform: float samples in [-1, 1), a 1-D ``[samples]`` or batched ``[B, samples]``
            tensor or ndarray; the result lives on the tensor's device.
        sample_rate: the waveform's rate; anything but 16 kHz is resampled first.
        preset: ``"paper"``, ``"vggish"`` or ``"yamnet"`` (see the module docstring).

    Returns:
        float32 ``[frames, 64]``, or ``[B, frames, 64]`` for a batch.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown log-mel preset {preset!r}; known: {sorted(PRESETS)}")
    settings = PRESETS[preset]
    wave = _resample(_as_tensor(waveform), sample_rate)
    if wave.dim() not in (1, 2):
        raise ValueError(f"expected [samples] or [B, samples], got shape {tuple(wave.shape)}")
    batched = wave.dim() == 2
    wave = wave if batched else wave[None]  # [B, n]
    if settings.pad and wave.shape[-1] <= settings.pad:
        raise ValueError(f"need more than {settings.pad} samples for the {preset} preset")
    if wave.shape[-1] + 2 * settings.pad < WINDOW:
        raise ValueError(f"need at least {WINDOW} samples (25 ms) for one frame")
    mel = _log_mel_cpu(wave.numpy(), settings) if wave.device.type == "cpu" else _log_mel_torch(wave, settings)
    return mel if batched else mel[0]


def _log_mel_torch(wave: torch.Tensor, settings: Preset) -> torch.Tensor:
    """``[B, n]`` -> ``[B, T, 64]`` in batched torch on the waveform's device (a GPU)."""
    if settings.pad:
        wave = F.pad(wave[:, None], (settings.pad, settings.pad), mode="reflect")[:, 0]
    frames = wave.unfold(-1, WINDOW, HOP)  # [B, T, 400]
    spectrum = torch.fft.rfft(frames * _window(settings.window, wave.device), n=N_FFT).abs()  # [B, T, 257]
    weights = torch.from_numpy(mel_matrix()).to(device=wave.device, dtype=torch.float32)  # [257, 64]
    return torch.log(spectrum @ weights + settings.log_offset)  # [B, T, 64]


#: Frames per block on the CPU: the block's FFT buffer and spectrum (~0.5 MB each) stay in L2.
BLOCK = 256


#: Mel bands per group of the banded mel product: a group's bands use only its bins.
BAND_GROUP = 16


@functools.lru_cache(maxsize=None)
def _mel_band() -> tuple[int, int, tuple[tuple[int, int, int, int, np.ndarray], ...]]:
    """The FFT bins with any mel weight (``lo:hi``), and the banded mel product over them.

    Each group of :data:`BAND_GROUP` mel bands is ``(first band, end band, first bin, end bin,
    float32 weights [bins, bands])`` with only the bins (counted from ``lo``) where any of its
    triangles is nonzero: about a quarter of the dense product's multiply-adds.
    """
    weights = mel_matrix()
    used = np.flatnonzero(weights.any(axis=1))
    lo, hi = int(used[0]), int(used[-1]) + 1
    band = weights[lo:hi]
    groups = []
    for first in range(0, N_MELS, BAND_GROUP):
        end = min(first + BAND_GROUP, N_MELS)
        rows = np.flatnonzero(band[:, first:end].any(axis=1))
        a, b = int(rows[0]), int(rows[-1]) + 1
        groups.append((first, end, a, b, np.ascontiguousarray(band[a:b, first:end], dtype=np.float32)))
    return lo, hi, tuple(groups)


def _log_mel_cpu(wave: np.ndarray, settings: Preset) -> torch.Tensor:
    """``[B, n]`` -> ``[B, T, 64]`` on the CPU, the same arithmetic as :func:`_log_mel_torch`.

    Frames go through in blocks of :data:`BLOCK`, so each block's windowed frames, spectrum and
    magnitudes stay in cache between the steps; only the FFT bins inside the mel band
    (125-7500 Hz: bins 5-239 of 257) get a magnitude and enter the mel product.
    """
    if settings.pad:
        wave = np.pad(wave, ((0, 0), (settings.pad, settings.pad)), mode="reflect")
    lo, hi, groups = _mel_band()
    window = _window(settings.window, torch.device("cpu")).numpy()
    n_frames = 1 + (wave.shape[-1] - WINDOW) // HOP
    frames = np.lib.stride_tricks.sliding_window_view(wave, WINDOW, axis=-1)[:, ::HOP]  # [B, T, 400] (a view)
    out = np.empty((len(wave), n_frames, N_MELS), dtype=np.float32)
    block = np.zeros((BLOCK, N_FFT), dtype=np.float32)  # zero-padded to the FFT length
    spectrum = torch.empty((BLOCK, N_FFT // 2 + 1), dtype=torch.complex64)
    magnitude = np.empty((BLOCK, hi - lo), dtype=np.float32)
    for row in range(len(wave)):
        for start in range(0, n_frames, BLOCK):
            n = min(BLOCK, n_frames - start)
            np.multiply(frames[row, start:start + n], window, out=block[:n, :WINDOW])
            torch.fft.rfft(torch.from_numpy(block[:n]), out=spectrum[:n])
            np.abs(spectrum.numpy()[:n, lo:hi], out=magnitude[:n])
            for first, end, a, b, weights in groups:
                np.matmul(magnitude[:n, a:b], weights, out=out[row, start:start + n, first:end])
    out += settings.log_offset
    np.log(out, out=out)
    return torch.from_numpy(out)


def frames_per_second(waveform, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Paper-preset features per non-overlapping 1-s frame: float32 ``[n_seconds, 100, 64]``.

    Each second is transformed on its own (reflect-padded at its edges, see the module
    docstring); a final partial second is dropped, so audio shorter than 1 s gives
    ``[0, 100, 64]``.
    """
    wave = _resample(_as_tensor(waveform), sample_rate)
    if wave.dim() != 1:
        raise ValueError(f"expected mono [samples], got shape {tuple(wave.shape)}")
    n_seconds = wave.shape[0] // SAMPLE_RATE
    if n_seconds == 0:
        return torch.zeros(0, FRAMES_PER_SECOND, N_MELS, device=wave.device)
    seconds = wave[: n_seconds * SAMPLE_RATE].reshape(n_seconds, SAMPLE_RATE)  # [S, 16000]
    return log_mel(seconds, SAMPLE_RATE, "paper")  # [S, 100, 64]


__all__ = ["FMAX", "FMIN", "FRAMES_PER_SECOND", "HOP", "N_FFT", "N_MELS", "PRESETS", "SAMPLE_RATE", "WINDOW",
           "Preset", "frames_per_second", "hertz_to_mel", "log_mel", "mel_matrix", "num_frames"]
