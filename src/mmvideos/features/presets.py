"""The log-mel front ends' settings (:mod:`mmvideos.features.logmel` computes them).

Light to import (no torch): the settings check of ``params.yaml`` and the features stage's
``config.json`` read these without loading the transform.
"""

from __future__ import annotations

from dataclasses import dataclass

SAMPLE_RATE = 16000
WINDOW = 400  # 25 ms at 16 kHz
HOP = 160  # 10 ms
N_FFT = 512  # next power of two above the window, as in VGGish
N_MELS = 64
FMIN, FMAX = 125.0, 7500.0
FRAMES_PER_SECOND = SAMPLE_RATE // HOP  # 100 with the paper preset
_PAPER_PAD = (WINDOW - HOP) // 2  # 120: n samples -> n // 160 frames


@dataclass(frozen=True)
class Preset:
    """One front end's settings."""

    window: str  # "hann" | "hamming", both periodic
    log_offset: float
    pad: int  # reflect padding at each end, in samples


PRESETS = {
    "vggish": Preset("hann", 0.01, 0),
    "yamnet": Preset("hann", 0.001, 0),
    "paper": Preset("hamming", 0.01, _PAPER_PAD),
}


def num_frames(n_samples: int, preset: str = "paper") -> int:
    """How many frames ``log_mel`` gives for ``n_samples`` 16 kHz samples."""
    padded = n_samples + 2 * PRESETS[preset].pad
    return 0 if padded < WINDOW else 1 + (padded - WINDOW) // HOP
