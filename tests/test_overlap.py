"""Benchmark overlap and near duplicates at ingest, on real media: espeak-ng speech, re-encoded with PyAV."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from media_fixtures import speech, tone, write_media
from mmvideos.config import from_dict
from mmvideos.data import media
from mmvideos.data.dataroot import DataRoot
from mmvideos.stages import exclusions, overlap
from mmvideos.stages.ingest import IngestConfig, ingest

SENTENCES = {
    "B": "Benchmark clips must never leak into the pretraining corpus, said the reviewer on Monday morning.",
    "C": "Seven hungry cats waited by the kitchen door for their dinner of fresh fish and cream, "
         "then slept in the sun.",
    "D": "The quick brown fox jumps over the lazy dog while the band plays a slow waltz in the park.",
    "E": "Tonight's news: the river bridge reopens after two years of repairs and many delays.",
    "F": "Tomorrow brings heavy rain in the north, with sunny spells along the southern coast.",
    "G": "Please remember to switch off the lights and lock every window before you leave.",
    "H": "A dog barks twice, then a door slams somewhere upstairs in the old wooden house.",
    "X": "Welcome back to the lecture. Today we look at how sound travels through water and air.",
}
YOUTUBE_ID = "dQw4w9WgXcQ"


def _video(path: Path, audio: np.ndarray, rate: int, **codecs) -> Path:
    return write_media(path, audio.size / rate, audio=audio, rate=rate, size=(96, 64), fps=10, **codecs)


def _reencode(src: Path, dst: Path, rate: int, **codecs) -> Path:
    """``src``'s sound decoded and encoded again at another rate and codec, under a new picture."""
    audio = np.concatenate(list(media.iter_audio(src, rate))).astype(np.float32) / 32768
    return _video(dst, audio, rate, **codecs)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Inputs, the benchmark audio folder and the exclusion settings.

    dQw4w9WgXcQ_000030.mp4   speech B, its YouTube id listed (AudioSet CSV)  -> benchmark overlap (id)
    b_reencoded.mkv          B as Opus 48 kHz in H.264/Matroska              -> benchmark overlap (audio of the above)
    c_copy.mp4               benchmark clip C as MP3 22 kHz                  -> benchmark overlap (exclude.audio)
    lecture.mp4              speech X, then C: the clip inside a longer video -> benchmark overlap (exclude.audio)
    1-100032-A-0.mp4         speech H, its name listed                       -> benchmark overlap (file name)
    renamed.mp4              speech G, its SHA-256 listed                    -> benchmark overlap (sha256)
    talk.mp4 / talk_reencoded.mp4   speech D and an MP3 copy                 -> talk kept, the copy a near duplicate
    news.mp4, weather.mp4, tone.mp4 unrelated                                -> kept
    """
    root = tmp_path_factory.mktemp("overlap")
    inputs, bench, voices = root / "inputs", root / "bench", root / "voices"
    for folder in (inputs, bench, voices):
        folder.mkdir()
    said = {k: speech(text, voices / f"{k}.wav") for k, text in SENTENCES.items()}
    (bench / "5-200000-B-1.wav").write_bytes((voices / "C.wav").read_bytes())  # ESC-50-like layout
    (bench / "esc50.csv").write_text("filename,fold,target\n5-200000-B-1.wav,5,1\n")  # not audio: skipped
    b = _video(inputs / f"{YOUTUBE_ID}_000030.mp4", *said["B"])
    _reencode(b, inputs / "b_reencoded.mkv", 48000, video_codec="libx264", audio_codec="libopus", audio_bit_rate=24000)
    c = _video(voices / "c.mp4", *said["C"])
    _reencode(c, inputs / "c_copy.mp4", 22050, audio_codec="libmp3lame", audio_bit_rate=32000)
    (x, rate), (c_audio, _) = said["X"], said["C"]
    _video(inputs / "lecture.mp4", np.concatenate([x, c_audio, x[: rate * 2]]), rate)
    _video(inputs / "1-100032-A-0.mp4", *said["H"])
    renamed = _video(inputs / "renamed.mp4", *said["G"])
    talk = _video(inputs / "talk.mp4", *said["D"])
    _reencode(talk, inputs / "talk_reencoded.mp4", 32000, audio_codec="libmp3lame", audio_bit_rate=48000)
    _video(inputs / "news.mp4", *said["E"])
    _video(inputs / "weather.mp4", *said["F"])
    write_media(inputs / "tone.mp4", 5.0, audio=tone(5.0), size=(96, 64), fps=10)
    eval_segments = root / "eval_segments.csv"
    eval_segments.write_text("# Segments csv created Sun Mar  5 10:54:25 2017\n# num_ytids=2\n"
                             "# YTID, start_seconds, end_seconds, positive_labels\n"
                             f'{YOUTUBE_ID}, 30.000, 40.000, "/m/09x0r"\n--0w1YA1Hm4, 30.000, 40.000, "/m/0bt9lr"\n')
    exclude = {"youtube_ids": [str(eval_segments)], "files": ["1-100032-A-0"],
               "sha256": [hashlib.sha256(renamed.read_bytes()).hexdigest()], "audio": [str(bench)]}
    return inputs, bench, exclude


@pytest.fixture(scope="module")
def ingested(corpus, tmp_path_factory):
    inputs, _, exclude = corpus
    out = tmp_path_factory.mktemp("ingest")
    cfg = from_dict(IngestConfig, {"exclude": exclude})
    summary = ingest(inputs, out, DataRoot(out / "root"), cfg, progress=False)
    rejects = pd.read_parquet(out / "rejects.parquet")
    reasons = {uri.rsplit("/", 1)[1]: r for uri, r in zip(rejects["uri"], rejects["reason"])}
    return out, summary, pd.read_parquet(out / "videos.parquet"), reasons


def test_excluded_clips_and_their_reencodings_are_benchmark_overlap(ingested):
    _, _, _, reasons = ingested
    assert reasons[f"{YOUTUBE_ID}_000030.mp4"] == f"benchmark overlap: YouTube id {YOUTUBE_ID} (exclude.youtube_ids)"
    assert reasons["b_reencoded.mkv"].startswith("benchmark overlap: audio matches ")
    assert f"{YOUTUBE_ID}_000030.mp4 (itself excluded by YouTube id {YOUTUBE_ID}" in reasons["b_reencoded.mkv"]
    for name in ("c_copy.mp4", "lecture.mp4"):  # a re-encoded copy, and the clip inside a longer video
        assert reasons[name].startswith("benchmark overlap: audio matches ")
        assert "5-200000-B-1.wav (exclude.audio;" in reasons[name]
    assert reasons["1-100032-A-0.mp4"] == "benchmark overlap: file name 1-100032-A-0 (exclude.files)"
    assert reasons["renamed.mp4"].startswith("benchmark overlap: content SHA-256 ")
    assert reasons["renamed.mp4"].endswith("(exclude.sha256)")


def test_a_reencoded_duplicate_is_rejected_naming_the_kept_one(ingested):
    _, _, videos, reasons = ingested
    talk = videos["uri"][videos["uri"].str.endswith("/talk.mp4")].item()
    assert reasons["talk_reencoded.mp4"].startswith(f"near duplicate of {talk} (audio fingerprint, bit error rate 0.")


def test_unrelated_videos_are_kept_and_every_input_counted_once(corpus, ingested):
    inputs, _, _ = corpus
    _, summary, videos, reasons = ingested
    kept = sorted(uri.rsplit("/", 1)[1] for uri in videos["uri"])
    assert kept == ["news.mp4", "talk.mp4", "tone.mp4", "weather.mp4"]
    assert sorted(kept + list(reasons)) == sorted(p.name for p in inputs.iterdir())
    assert summary["inputs"] == 11 and summary["videos_kept"] == 4 and summary["videos_rejected"] == 7
    assert summary["benchmark_overlaps"] == 6 and summary["near_duplicates"] == 1
    assert summary["benchmark_fingerprints"] == 1  # the WAV; esc50.csv holds no audio


def test_rerun_reuses_the_fingerprints(corpus, ingested):
    inputs, _, exclude = corpus
    out, summary, videos, _ = ingested
    again = out / "again"
    cfg = from_dict(IngestConfig, {"exclude": exclude})
    second = ingest(inputs, again, DataRoot(out / "root"), cfg, progress=False)
    assert second["shards_reused"] == 11 and second["shards_computed"] == 0
    manifest = pd.read_parquet(again / "manifest.parquet")
    assert len(manifest) == 13  # 11 probes, the 2 benchmark files (the CSV: no audio); all reused, as counted above
    pd.testing.assert_frame_equal(pd.read_parquet(again / "videos.parquet"), videos)
    assert {k: second[k] for k in ("benchmark_overlaps", "near_duplicates")} == {"benchmark_overlaps": 6,
                                                                                 "near_duplicates": 1}


def test_youtube_ids_are_read_from_the_usual_file_names():
    assert exclusions.youtube_ids_in("gs://b/eval/Y--0w1YA1Hm4_30.000_40.000.wav") == {"--0w1YA1Hm4"}
    assert exclusions.youtube_ids_in("/v/---g-f_I2yQ_000001.mp4") == {"---g-f_I2yQ"}  # VGGSound
    assert exclusions.youtube_ids_in("/v/dQw4w9WgXcQ.mp4") == {"dQw4w9WgXcQ"}
    assert exclusions.youtube_ids_in("/v/--PJHxphWEs_30000_40000.flac") == {"--PJHxphWEs"}
    assert "Yabcdefghij" in exclusions.youtube_ids_in("/v/Yabcdefghij_30.mp4")  # an id that starts with Y
    assert exclusions.youtube_ids_in("/v/video_001.mp4") == set()


def test_bad_exclusions_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="'abc' is not a valid youtube id"):
        overlap.screen(pd.DataFrame(columns=["uri", "sha256", "fingerprint", "landmarks"]),
                       overlap.ExcludeConfig(youtube_ids=("abc",)), overlap.FingerprintConfig())
    with pytest.raises(ValueError, match="expected a list of strings"):
        from_dict(IngestConfig, {"exclude": {"files": "one.wav"}})
    with pytest.raises(ValueError, match="unknown setting"):
        from_dict(IngestConfig, {"exclude": {"youtube": []}})
    with pytest.raises(ValueError, match="needs audio fingerprints"):
        overlap.benchmark_prints((str(tmp_path),), overlap.FingerprintConfig(seconds=0))


def test_steady_sound_never_matches():
    """A steady tone or silence gives one repeated value: no evidence of a copy, so no match."""
    cfg = overlap.FingerprintConfig()
    prints = [np.full(40, 0x5A5A5A5A, dtype=np.uint32), np.full(40, 0x5A5A5A5B, dtype=np.uint32)]
    assert overlap.find_matches(prints, cfg) == []


def _drifting(rng, n: int) -> np.ndarray:
    """A print that changes a few bits a step, as speech gives."""
    flips = np.bitwise_or.reduce(np.uint64(1) << rng.integers(0, 32, size=(n, 6)).astype(np.uint64), axis=1)
    return np.bitwise_xor.accumulate(flips ^ rng.integers(0, 2**32, dtype=np.uint64)).astype(np.uint32)


def test_shared_silence_is_no_evidence_of_a_copy():
    """Two unrelated clips padded with digital silence (every silent stretch gives the same value,
    as ESC-50's padding does) do not match; a copy of one does, on its sound alone."""
    rng = np.random.default_rng(1)
    silence = np.full(40, 0x256DF977, dtype=np.uint32)
    a, b = np.r_[_drifting(rng, 20), silence], np.r_[_drifting(rng, 20), silence]
    beep = np.r_[np.full(3, 0x11111111, dtype=np.uint32), _drifting(rng, 2), silence]  # a short beep, then nothing
    copy = a ^ (rng.random((a.size, 32)) < 0.02).astype(np.uint64).dot(1 << np.arange(32, dtype=np.uint64)).astype(
        np.uint32)
    # the silence and the values next to it (their filters still see mostly silence) are masked
    assert overlap.informative(a)[:16].all() and not overlap.informative(a)[18:].any()
    matches = overlap.find_matches([a, b, beep, copy], overlap.FingerprintConfig())
    assert [(m.a, m.b) for m in matches] == [(0, 3)]
    assert matches[0].items <= 18  # scored over the sound, not the silence


def test_a_clip_copied_many_times_links_every_copy_to_the_first():
    """More copies than an index value's all-pairs limit: each copy still pairs with the first."""
    rng = np.random.default_rng(0)
    flips = np.bitwise_or.reduce(np.uint64(1) << rng.integers(0, 32, size=(200, 6)).astype(np.uint64), axis=1)
    original = np.bitwise_xor.accumulate(flips).astype(np.uint32)  # a drifting 25-s print, as speech gives
    copies = []
    for _ in range(overlap.MAX_POSTINGS + 40):
        noise = rng.random((original.size, 32)) < 0.005  # a few bits flipped, as a mild re-encoding does
        copies.append(original ^ (noise * (1 << np.arange(32, dtype=np.uint64))).sum(1).astype(np.uint32))
    unrelated = [np.bitwise_xor.accumulate(rng.integers(0, 2**32, size=200, dtype=np.uint64)).astype(np.uint32)
                 for _ in range(20)]
    matches = overlap.find_matches([original, *copies, *unrelated], overlap.FingerprintConfig())
    assert {m.b for m in matches if m.a == 0} == set(range(1, len(copies) + 1))
    assert all(m.b <= len(copies) for m in matches)  # nothing unrelated matches
    assert all(m.ber < 0.1 and m.items == 200 for m in matches if m.a == 0)


def test_settings_come_from_params_yaml():
    from mmvideos.settings import section

    cfg = section(IngestConfig, "ingest", Path(__file__).parents[1] / "params.yaml")
    assert isinstance(cfg.exclude, overlap.ExcludeConfig) and cfg.exclude.audio == ()
    assert cfg.fingerprint.seconds == 120 and cfg.fingerprint.max_ber == 0.2 and cfg.fingerprint.min_votes == 18
    kfp_style = from_dict(IngestConfig, {"fingerprint": {"seconds": 30.0, "max_ber": 0.25, "min_overlap_s": 2}})
    assert kfp_style.fingerprint.min_overlap_s == 2.0 and kfp_style.fingerprint.min_items == 16
