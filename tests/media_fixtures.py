"""Real media files made at test time with PyAV (its bundled FFmpeg) and espeak-ng."""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np

from mmvideos.demo.synth_media import colour_bars, tone, write_corpus, write_media  # noqa: F401 (the tests' fixtures)


def speech(text: str, out: Path) -> tuple[np.ndarray, int]:
    """Speak ``text`` with espeak-ng into ``out`` (WAV); returns (float32 samples, rate)."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is needed for the speech fixtures (`make test` installs it)")
    subprocess.run(["espeak-ng", "-w", str(out), text], check=True, capture_output=True)
    with wave.open(str(out)) as wav:
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        return pcm.astype(np.float32) / 32768.0, wav.getframerate()
