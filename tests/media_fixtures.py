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


def atempo(samples: np.ndarray, rate: int, factor: float) -> np.ndarray:
    """``samples`` played ``factor`` times as fast at the same pitch, by FFmpeg's ``atempo`` filter
    (WSOLA, what video editors use), through PyAV."""
    import fractions

    import av
    import av.filter

    graph = av.filter.Graph()
    source = graph.add_abuffer(format="flt", sample_rate=rate, layout="mono", time_base=fractions.Fraction(1, rate))
    stretch, sink = graph.add("atempo", f"{factor}"), graph.add("abuffersink")
    source.link_to(stretch)
    stretch.link_to(sink)
    graph.configure()
    out = []

    def drain() -> None:
        while True:
            try:
                out.append(graph.pull().to_ndarray().reshape(-1))
            except (av.BlockingIOError, av.EOFError):
                return

    for start in range(0, samples.size, 4096):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[None, start:start + 4096], dtype=np.float32),
                                           format="flt", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, start, fractions.Fraction(1, rate)
        graph.push(frame)
        drain()
    graph.push(None)
    drain()
    return np.concatenate(out).astype(np.float32)
