"""The leakage guard against edited copies: benchmark clips re-encoded, turned down, time-stretched,
sped up or slowed down, pitch-shifted, or mixed under pink noise at 0 dB, inside longer videos, next to the
twenty negatives of ``test_overlap_negatives`` (silence, DC, noise beds, tones, beeps, speech
beside silence). Everything goes through ``overlap.screen`` as ingest runs it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from media_fixtures import atempo, write_media
from test_overlap_negatives import RATE, _negatives, _pink, _said

from mmvideos.stages import landmarks, overlap

CLIPS = ["The dog barked at the cat twice and ran away.", "Rain falls on the old roof all night long.",
         "Seven hungry cats waited by the kitchen door.", "The quick brown fox jumps over the lazy dog.",
         "Tonight the river bridge reopens after repairs.", "Heavy rain in the north, sunny spells in the south.",
         "Switch off the lights and lock every window.", "A door slams somewhere upstairs in the house.",
         "Please pass the salt and the pepper to your sister.", "Our train leaves at nine from platform four."]
OTHER = ["Welcome back to the lecture about sound in water.", "The band plays a slow waltz in the park today.",
         "My grandmother grows tomatoes and beans every summer."]
#: The edits and the recall each must reach (the issue's bar).
EDITS = {"reencode": 0.95, "gain": 0.95, "tempo0.9": 0.95, "tempo1.1": 0.95, "speed0.9": 0.8, "speed1.1": 0.8,
         "pitch0.9": 0.8, "pitch1.1": 0.8, "noise0dB": 0.8}


def _speed(clip: np.ndarray, factor: float) -> np.ndarray:
    """Played ``factor`` times as fast, pitch and tempo together (a resampling)."""
    return np.interp(np.arange(0, clip.size - 1, factor), np.arange(clip.size), clip).astype(np.float32)


def _edit(clip: np.ndarray, edit: str, rng: np.random.Generator) -> np.ndarray:
    if edit == "gain":
        return clip * np.float32(10 ** (-12 / 20))
    if edit.startswith("tempo"):
        return atempo(clip, RATE, float(edit[5:]))
    if edit.startswith("speed"):
        return _speed(clip, float(edit[5:]))
    if edit.startswith("pitch"):  # the speed change's pitch, its tempo undone
        return atempo(_speed(clip, float(edit[5:])), RATE, 1 / float(edit[5:]))
    if edit == "noise0dB":
        sound = clip[np.abs(clip) > 1e-3]
        return clip + _pink(rng, clip.size) * np.sqrt(np.mean(sound ** 2))
    return clip


@pytest.fixture(scope="module")
def screened(tmp_path_factory):
    root = tmp_path_factory.mktemp("edited")
    bench, inputs = root / "bench", root / "inputs"
    bench.mkdir()
    inputs.mkdir()
    rng = np.random.default_rng(0)
    for k, text in enumerate(CLIPS):
        clip = _said(text, root, f"b{k}")[: 5 * RATE]
        write_media(bench / f"1-{k}-A-0.wav", 5.0, video=False, audio=clip, rate=RATE, audio_codec="pcm_s16le")
        for edit in EDITS:
            sound = _edit(clip, edit, rng)
            if edit == "reencode":  # through a 32-kbps MP3 first, then the video's AAC
                mp3 = write_media(root / f"{k}.mp3", sound.size / RATE, video=False, audio=sound, rate=RATE,
                                  audio_codec="libmp3lame", audio_bit_rate=32000)
                sound = np.concatenate([c for c in overlap.media.iter_audio(mp3, RATE)]).astype(np.float32) / 32768
            video = _pink(rng, 10 * RATE) * np.float32(10 ** (-50 / 20))  # a quiet bed under the whole video
            video[3 * RATE: 3 * RATE + sound.size] += 0.5 * sound[: 7 * RATE]
            write_media(inputs / f"{edit}_{k}.mp4", 10.0, audio=video, rate=RATE, size=(32, 32), fps=5)
    for name, audio in _negatives(rng, [_said(text, root, f"o{k}") for k, text in enumerate(OTHER)]).items():
        write_media(inputs / f"negative_{name}.mp4", audio.size / RATE, audio=audio, rate=RATE, size=(32, 32), fps=5)
    cfg = overlap.FingerprintConfig()
    uris = sorted(str(p) for p in inputs.iterdir())
    prints = pd.DataFrame([overlap.audio_prints(u, cfg.seconds) for u in uris])
    candidates = pd.DataFrame({"uri": uris, "sha256": [hashlib.sha256(Path(u).read_bytes()).hexdigest() for u in uris],
                               **prints.to_dict("list")})
    result = overlap.screen(candidates, overlap.ExcludeConfig(audio=(str(bench),)), cfg)
    return {Path(uri).stem: reason for uri, reason in result.reasons.items()}


def test_edited_copies_are_caught_and_nothing_else(screened):
    recall = {}
    for edit in EDITS:
        caught = [screened.get(f"{edit}_{k}", "") for k in range(len(CLIPS))]
        assert all(f"1-{k}-A-0.wav" in reason for k, reason in enumerate(caught) if reason), caught  # the right clip
        recall[edit] = sum(bool(r) for r in caught) / len(CLIPS)
    assert all(recall[edit] >= bar for edit, bar in EDITS.items()), recall
    false = {name: reason for name, reason in screened.items() if name.startswith("negative_")}
    assert false == {}


def test_index_round_trip_and_silence_has_no_peaks():
    rng = np.random.default_rng(3)
    points = landmarks.peaks(_pink(rng, 3 * RATE) * 0.1)
    assert len(points) > 0  # float16 pitch: within 0.02 semitones
    assert np.allclose(landmarks.decode(landmarks.encode(points)), points, atol=0.02)
    assert landmarks.peaks(np.zeros(3 * RATE, np.float32)).shape == (0, 2)
    assert landmarks.peaks(np.full(3 * RATE, 0.3, np.float32)).shape == (0, 2)  # DC
    tone = (0.3 * np.sin(2 * np.pi * 1000 * np.arange(3 * RATE) / RATE)).astype(np.float32)
    assert landmarks.peaks(tone).shape == (0, 2)  # steady: nothing changes
    assert landmarks.BenchmarkIndex([points]).best(np.zeros((0, 2), np.float32)) is None
