"""Real media made on the spot with PyAV (its bundled FFmpeg): test patterns with tones.

The tests and the scale benchmark (``mmvideos bench --scale``) generate their corpora with these.
"""

from __future__ import annotations

import fractions
from pathlib import Path

import av
import numpy as np


def colour_bars(t: float, width: int, height: int) -> np.ndarray:
    """Moving colour bars: an RGB uint8 frame for time ``t``."""
    x = (np.arange(width)[None, :] + int(t * 40)) % width
    bars = (x * 7 // width)[..., None]
    palette = np.array([[255, 255, 255], [255, 255, 0], [0, 255, 255], [0, 255, 0],
                        [255, 0, 255], [255, 0, 0], [0, 0, 255]], dtype=np.uint8)
    return np.broadcast_to(palette[bars[..., 0]], (height, width, 3)).copy()


def tone(duration: float, rate: int = 44100, hz: float = 440.0) -> np.ndarray:
    """A sine tone as float32 samples."""
    t = np.arange(int(duration * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def write_media(path: Path, duration: float, *, video: bool = True, audio: np.ndarray | None = None,
                rate: int = 44100, fps: int = 25, size: tuple[int, int] = (320, 240), video_codec: str = "mpeg4",
                audio_codec: str = "aac", audio_bit_rate: int | None = None) -> Path:
    """Encode a file (by default an MP4 of mpeg4 video and/or AAC audio) of ``duration`` seconds;
    the container follows the file's extension."""
    with av.open(str(path), "w") as out:
        vstream = astream = None
        if video:
            vstream = out.add_stream(video_codec, rate=fps)
            vstream.width, vstream.height, vstream.pix_fmt = size[0], size[1], "yuv420p"
        if audio is not None:
            astream = out.add_stream(audio_codec, rate=rate)
            astream.layout = "mono"
            if audio_bit_rate:
                astream.bit_rate = audio_bit_rate
        if vstream is not None:
            for i in range(int(duration * fps)):
                frame = av.VideoFrame.from_ndarray(colour_bars(i / fps, *size), format="rgb24")
                out.mux(vstream.encode(frame))
            out.mux(vstream.encode(None))
        if astream is not None:
            samples = np.zeros(int(duration * rate), dtype=np.float32)
            samples[: min(audio.size, samples.size)] = audio[: samples.size]
            block = 1024
            for start in range(0, samples.size, block):
                chunk = samples[start:start + block][None, :]
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="flt", layout="mono")
                frame.sample_rate = rate
                frame.pts = start
                frame.time_base = fractions.Fraction(1, rate)
                out.mux(astream.encode(frame))
            out.mux(astream.encode(None))
    return path


def write_corpus(folder: Path, count: int, start: int = 0, duration: float = 3.5) -> list[Path]:
    """``count`` short videos with sound, each with its own tone (so each has its own content)."""
    folder.mkdir(parents=True, exist_ok=True)
    return [write_media(folder / f"video_{i:03d}.mp4", duration, audio=tone(duration, hz=220.0 + 37.0 * i),
                        size=(96, 64), fps=10)
            for i in range(start, start + count)]
