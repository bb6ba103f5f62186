"""The leakage guard on real media: silence, tones, noise beds and beeps never match benchmark
clips padded with digital silence (as ESC-50 pads its short clips), nor each other; verbatim
copies of the clips are still caught."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from media_fixtures import write_media

from mmvideos.bench.leakage import RATE, negatives, said, seconds
from mmvideos.stages import overlap

BENCHMARK = ["The dog barked at the cat twice and ran away.", "Rain falls on the old roof all night long.",
             "Seven hungry cats waited by the kitchen door.", "Switch off the lights and lock every window."]
OTHER = ["Welcome back to the lecture about sound in water.", "The band plays a slow waltz in the park today.",
         "Tonight the river bridge reopens after repairs."]


@pytest.fixture(scope="module")
def screened(tmp_path_factory):
    root = tmp_path_factory.mktemp("negatives")
    bench, inputs = root / "bench", root / "inputs"
    bench.mkdir()
    inputs.mkdir()
    rng = np.random.default_rng(0)
    for k, text in enumerate(BENCHMARK):  # ESC-50's layout: 5-s WAVs, short sounds padded with silence
        clip = said(text, root, f"b{k}")[: 5 * RATE]
        write_media(bench / f"1-{k}-A-0.wav", 5.0, video=False, audio=clip, rate=RATE, audio_codec="pcm_s16le")
        # a verbatim copy inside a longer video, re-encoded to AAC: the guard's job
        write_media(inputs / f"copy_{k}.mp4", 9.0, audio=seconds(2.0, clip, 2.0), rate=RATE, size=(32, 32), fps=5)
    unrelated = negatives(rng, [said(text, root, f"o{k}") for k, text in enumerate(OTHER)])
    assert len(unrelated) == 20
    for name, audio in unrelated.items():
        write_media(inputs / f"{name}.mp4", audio.size / RATE, audio=audio, rate=RATE, size=(32, 32), fps=5)
    cfg = overlap.FingerprintConfig()
    uris = sorted(str(p) for p in inputs.iterdir())
    candidates = pd.DataFrame({"uri": uris, "sha256": [hashlib.sha256(Path(u).read_bytes()).hexdigest() for u in uris],
                               **pd.DataFrame([overlap.audio_prints(u, cfg.seconds) for u in uris]).to_dict("list")})
    result = overlap.screen(candidates, overlap.ExcludeConfig(audio=(str(bench),)), cfg)
    return {Path(uri).stem: reason for uri, reason in result.reasons.items()}, unrelated


def test_silence_tones_noise_and_beeps_never_match(screened):
    reasons, unrelated = screened
    assert {name: reasons[name] for name in unrelated if name in reasons} == {}


def test_verbatim_copies_are_still_caught(screened):
    reasons, _ = screened
    for k in range(len(BENCHMARK)):
        assert reasons[f"copy_{k}"].startswith(f"{overlap.BENCHMARK}: audio matches "), reasons
