"""The leakage guard on real media: silence, tones, noise beds and beeps never match benchmark
clips padded with digital silence (as ESC-50 pads its short clips), nor each other; verbatim
copies of the clips are still caught."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from media_fixtures import speech, write_media
from mmvideos.stages import overlap

RATE = 16000
BENCHMARK = ["The dog barked at the cat twice and ran away.", "Rain falls on the old roof all night long.",
             "Seven hungry cats waited by the kitchen door.", "Switch off the lights and lock every window."]
OTHER = ["Welcome back to the lecture about sound in water.", "The band plays a slow waltz in the park today.",
         "Tonight the river bridge reopens after repairs."]


def _pink(rng: np.random.Generator, n: int) -> np.ndarray:
    freqs = np.fft.rfftfreq(n)
    spectrum = rng.standard_normal(freqs.size) + 1j * rng.standard_normal(freqs.size)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0
    noise = np.fft.irfft(spectrum, n)
    return (noise / noise.std()).astype(np.float32)


def _said(text: str, folder: Path, name: str) -> np.ndarray:
    samples, rate = speech(text, folder / f"{name}.wav")
    return np.interp(np.arange(0, samples.size, rate / RATE), np.arange(samples.size), samples).astype(np.float32)


def _seconds(*parts: np.ndarray | float) -> np.ndarray:
    """Samples and stretches of digital silence (given in seconds) one after another."""
    return np.concatenate([np.zeros(int(p * RATE), np.float32) if isinstance(p, float) else p for p in parts])


def _negatives(rng: np.random.Generator, other: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Twenty videos' sound that holds no benchmark clip."""
    t = np.arange(6 * RATE) / RATE
    beep = 0.3 * np.sin(2 * np.pi * 1000 * t[: int(0.6 * RATE)]).astype(np.float32)
    return {
        **{f"silence_{s}s": _seconds(float(s)) for s in (3, 6, 9)},
        "dc": np.full(6 * RATE, 0.2, np.float32),
        **{f"noise_bed_{db}dB": _pink(rng, 6 * RATE) * 10 ** (db / 20) for db in (-60, -50, -40)},
        **{f"tone_{hz}Hz": (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32) for hz in (440, 1000, 3000)},
        **{f"beep_then_silence_{s}s": _seconds(beep, float(s)) for s in (3, 5)},
        "beep_in_noise_bed": _seconds(beep, 5.0) + _pink(rng, int(5.6 * RATE)) * 10 ** (-50 / 20),
        **{f"speech_then_silence_{k}": _seconds(o, 5.0) for k, o in enumerate(other)},
        **{f"silence_then_speech_{k}": _seconds(5.0, o) for k, o in enumerate(other)},
        "tone_then_silence": _seconds(0.3 * np.sin(2 * np.pi * 440 * t[: 2 * RATE]).astype(np.float32), 4.0),
    }


@pytest.fixture(scope="module")
def screened(tmp_path_factory):
    root = tmp_path_factory.mktemp("negatives")
    bench, inputs = root / "bench", root / "inputs"
    bench.mkdir()
    inputs.mkdir()
    rng = np.random.default_rng(0)
    for k, text in enumerate(BENCHMARK):  # ESC-50's layout: 5-s WAVs, short sounds padded with silence
        clip = _said(text, root, f"b{k}")[: 5 * RATE]
        write_media(bench / f"1-{k}-A-0.wav", 5.0, video=False, audio=clip, rate=RATE, audio_codec="pcm_s16le")
        # a verbatim copy inside a longer video, re-encoded to AAC: the guard's job
        write_media(inputs / f"copy_{k}.mp4", 9.0, audio=_seconds(2.0, clip, 2.0), rate=RATE, size=(32, 32), fps=5)
    negatives = _negatives(rng, [_said(text, root, f"o{k}") for k, text in enumerate(OTHER)])
    assert len(negatives) == 20
    for name, audio in negatives.items():
        write_media(inputs / f"{name}.mp4", audio.size / RATE, audio=audio, rate=RATE, size=(32, 32), fps=5)
    cfg = overlap.FingerprintConfig()
    uris = sorted(str(p) for p in inputs.iterdir())
    candidates = pd.DataFrame({"uri": uris, "sha256": [hashlib.sha256(Path(u).read_bytes()).hexdigest() for u in uris],
                               **pd.DataFrame([overlap.audio_prints(u, cfg.seconds) for u in uris]).to_dict("list")})
    result = overlap.screen(candidates, overlap.ExcludeConfig(audio=(str(bench),)), cfg)
    return {Path(uri).stem: reason for uri, reason in result.reasons.items()}, negatives


def test_silence_tones_noise_and_beeps_never_match(screened):
    reasons, negatives = screened
    assert {name: reasons[name] for name in negatives if name in reasons} == {}


def test_verbatim_copies_are_still_caught(screened):
    reasons, _ = screened
    for k in range(len(BENCHMARK)):
        assert reasons[f"copy_{k}"].startswith(f"{overlap.BENCHMARK}: audio matches "), reasons
