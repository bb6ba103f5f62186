"""The leakage guard against edited copies (:mod:`mmvideos.bench.leakage`'s generated set):
benchmark clips re-encoded, turned down, time-stretched, sped up or slowed down, pitch-shifted or
mixed under pink noise at 0 dB, inside longer videos, beside twenty negatives (silence, DC, noise
beds, tones, beeps, speech beside silence). Everything goes through ``overlap.screen`` as ingest
runs it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmvideos.bench.leakage import CLIPS, EDITS, RATE, generate, pink
from mmvideos.stages import landmarks, overlap


@pytest.fixture(scope="module")
def screened(tmp_path_factory):
    bench, truth = generate(tmp_path_factory.mktemp("edited"))
    cfg = overlap.FingerprintConfig()
    uris = sorted(str(bench.parent / "inputs" / f"{stem}.mp4") for stem in truth)
    prints = pd.DataFrame([overlap.audio_prints(u, cfg.seconds) for u in uris])
    candidates = pd.DataFrame({"uri": uris, "sha256": [hashlib.sha256(Path(u).read_bytes()).hexdigest() for u in uris],
                               **prints.to_dict("list")})
    result = overlap.screen(candidates, overlap.ExcludeConfig(audio=(str(bench),)), cfg)
    return {Path(uri).stem: reason for uri, reason in result.reasons.items()}, truth


def test_edited_copies_are_caught_and_nothing_else(screened):
    reasons, truth = screened
    recall = {}
    for edit in EDITS:
        caught = [reasons.get(f"{edit}_{k}", "") for k in range(len(CLIPS))]
        assert all(f"1-{k}-A-0.wav" in reason for k, reason in enumerate(caught) if reason), caught  # the right clip
        recall[edit] = sum(bool(r) for r in caught) / len(CLIPS)
    assert all(recall[edit] >= bar for edit, bar in EDITS.items()), recall
    false = {stem: reasons[stem] for stem, clip in truth.items() if clip is None and stem in reasons}
    assert sum(clip is None for clip in truth.values()) == 20 and false == {}


def test_index_round_trip_and_silence_has_no_peaks():
    rng = np.random.default_rng(3)
    points = landmarks.peaks(pink(rng, 3 * RATE) * 0.1)
    assert len(points) > 0  # float16 pitch: within 0.02 semitones
    assert np.allclose(landmarks.decode(landmarks.encode(points)), points, atol=0.02)
    assert landmarks.peaks(np.zeros(3 * RATE, np.float32)).shape == (0, 2)
    assert landmarks.peaks(np.full(3 * RATE, 0.3, np.float32)).shape == (0, 2)  # DC
    tone = (0.3 * np.sin(2 * np.pi * 1000 * np.arange(3 * RATE) / RATE)).astype(np.float32)
    assert landmarks.peaks(tone).shape == (0, 2)  # steady: nothing changes
    assert landmarks.BenchmarkIndex([points]).best(np.zeros((0, 2), np.float32)) is None
