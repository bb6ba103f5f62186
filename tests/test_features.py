"""The features stage on a tiny real clip folder: a tone and espeak-ng speech, one unit per clip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torchaudio.functional

from conftest import upload_dir
from media_fixtures import root_with, speech, tone
from mmvideos.data import dataroot, shards
from mmvideos.data.atomic import write_parquet
from mmvideos.data.dataroot import DataRoot
from mmvideos.data.runrecord import is_run_key, read_summary
from mmvideos.features import logmel
from mmvideos.features.store import FeatureRecord, iter_features, read_feature_config, read_index, read_vocabulary
from mmvideos.stages.features import FeatureConfig, extract_features, feature_throughput, log_mel_seconds

SR = 16000
CFG = FeatureConfig(preset="paper", batch_seconds=4, device="cpu")  # small batches: several flushes

VOCABULARY = pd.DataFrame({
    "index": [0, 1, 2, 3],
    "id": ["n02084071", "/m/09x0r", "/m/07pbtc8", "/m/09x0r"],
    "name": ["dog", "Speech", "Sine wave", "speech (visual)"],
    "modality": ["visual", "audio", "audio", "visual"],
    "count": [1, 1, 1, 1],
})


@pytest.fixture(scope="module")
def clip_audio(tmp_path_factory) -> dict[str, np.ndarray]:
    """16 kHz float32 audio of the clips, at the 16-bit precision the clip stage stores."""
    voice, rate = speech("The quick brown fox jumps over the lazy dog.", tmp_path_factory.mktemp("tts") / "v.wav")
    voice16 = torchaudio.functional.resample(torch.from_numpy(voice), rate, SR).numpy()
    audio = {
        "vidtone-000": tone(3.5, rate=SR),          # 3 s of features, train, shard 0
        "vidspeech-000": np.pad(voice16, (0, max(0, 3 * SR - voice16.size))),  # val, shard 1
        "vidshort-000": tone(0.6, rate=SR),         # under 1 s: skipped
        "vidnolabel-000": tone(3.0, rate=SR, hz=1000.0),  # not in the label table: skipped
    }
    return {k: np.round(v * 32767).astype(np.int16).astype(np.float32) / 32768 for k, v in audio.items()}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, clip_audio) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("inputs")
    clips_dir, labels_dir = root / "clips", root / "labels"
    placement = {"vidtone-000": ("train", 3), "vidshort-000": ("train", 3), "vidspeech-000": ("val", 4000),
                 "vidnolabel-000": ("train", 4001)}
    rows, records = [], []
    data = DataRoot(root / "data")
    for clip_id, (split, fold) in placement.items():
        pcm = np.round(clip_audio[clip_id] * 32768).astype(np.int16)
        with shards.ShardWriter(root / "audio.tar") as writer:
            writer.write(clip_id, {"wav": shards.wav_bytes(pcm, SR)})
        key = dataroot.unit_key("clip", clip=clip_id)
        records.append(data.commit("clip", key, {"audio.tar": root / "audio.tar"}, {"video_id": clip_id[:-4], "clips": 1}))
        rows.append({"clip_id": clip_id, "video_id": clip_id[:-4], "start_s": 0.0,
                     "end_s": pcm.size / SR, "fold": fold, "split": split, "n_frames": 9, "shard": key})
    write_parquet(dataroot.manifest_rows(records), clips_dir / dataroot.MANIFEST)
    write_parquet(pd.DataFrame(rows), clips_dir / "clips.parquet")
    labels = pd.DataFrame([
        {"clip_id": "vidtone-000", "video_id": "vidtone", "fold": 3, "split": "train",
         "visual_labels": ["n02084071", "/m/09x0r"], "visual_scores": [0.6, 0.2],
         "audio_labels": ["/m/07pbtc8"], "audio_scores": [0.9], "label_ids": ["n02084071", "/m/09x0r", "/m/07pbtc8"]},
        {"clip_id": "vidspeech-000", "video_id": "vidspeech", "fold": 4000, "split": "val",
         "visual_labels": ["/m/09x0r"], "visual_scores": [0.5],
         "audio_labels": ["/m/09x0r"], "audio_scores": [0.8], "label_ids": ["/m/09x0r"]},
        {"clip_id": "vidshort-000", "video_id": "vidshort", "fold": 3, "split": "train",
         "visual_labels": ["n02084071"], "visual_scores": [0.5],
         "audio_labels": [], "audio_scores": [], "label_ids": ["n02084071"]},
    ])
    write_parquet(labels, labels_dir / "labels.parquet")
    write_parquet(VOCABULARY, labels_dir / "vocabulary.parquet")
    return clips_dir, labels_dir


@pytest.fixture(scope="module")
def features(tmp_path_factory, inputs) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("features")
    return out, extract_features(*inputs, out, root_with(inputs[0].parent / "data", out / "data"), CFG, progress=False)


def test_summary_counts_clips_seconds_and_skips(features):
    out, summary = features
    assert summary["clips"] == 2 and summary["audio_seconds"] == 3 + 3
    assert summary["clips_unlabelled"] == 1 and summary["clips_too_short"] == 1
    assert summary["shards"] == summary["shards_computed"] == 4 and summary["clips_computed"] == 4
    assert json.loads((out / "summary.json").read_text()) == {k: v for k, v in summary.items() if not is_run_key(k)}
    assert read_summary(out) == summary  # the run's part (reuse, seconds) in run.json beside it


def test_records_have_paper_shapes_labels_and_splits(features, clip_audio):
    out, _ = features
    records = {r.clip_id: r for r in iter_features(out, root=str(out / "data"))}
    assert sorted(records) == ["vidspeech-000", "vidtone-000"]
    tone_rec, speech_rec = records["vidtone-000"], records["vidspeech-000"]
    assert tone_rec.mel.shape == (3, 100, 64) and tone_rec.mel.dtype == np.float16
    assert speech_rec.mel.shape == (3, 100, 64)
    # Labels map through the vocabulary by modality: "/m/09x0r" is 3 as a visual label, 1 as audio.
    assert tone_rec.visual.tolist() == [0, 3] and tone_rec.audio.tolist() == [2]
    assert speech_rec.visual.tolist() == [3] and speech_rec.audio.tolist() == [1]
    assert tone_rec.visual.dtype == np.int64
    assert (tone_rec.split, tone_rec.fold, speech_rec.split, speech_rec.fold) == ("train", 3, "val", 4000)
    # The stored features are A's per-second front end, to float16 precision.
    for clip_id, record in records.items():
        expected = logmel.frames_per_second(clip_audio[clip_id]).numpy()
        np.testing.assert_allclose(record.mel.astype(np.float32), expected, atol=0.01, rtol=2e-3)


def test_tone_energy_sits_in_the_440_hz_mel_band(features):
    out, _ = features
    mel = next(r.mel for r in iter_features(out, root=str(out / "data")) if r.clip_id == "vidtone-000").astype(np.float32)
    edges = np.linspace(logmel.hertz_to_mel(logmel.FMIN), logmel.hertz_to_mel(logmel.FMAX), logmel.N_MELS + 2)
    band = int(np.argmin(np.abs(edges[1:-1] - logmel.hertz_to_mel(440.0))))
    assert abs(int(mel.mean(axis=(0, 1)).argmax()) - band) <= 1
    # Speech is not stationary: its frames vary far more over time than the tone's.
    speech_mel = next(r.mel for r in iter_features(out, root=str(out / "data")) if r.clip_id == "vidspeech-000").astype(np.float32)
    assert speech_mel.std(axis=1).mean() > 3 * mel.std(axis=1).mean()


def test_split_filter_and_shard_shuffle(features):
    out, _ = features
    assert [r.clip_id for r in iter_features(out, split="train", root=str(out / "data"))] == ["vidtone-000"]
    assert [r.clip_id for r in iter_features(out, split="val", root=str(out / "data"))] == ["vidspeech-000"]
    shuffled = [r.clip_id for r in iter_features(out, shuffle_shards_seed=1, root=str(out / "data"))]
    assert sorted(shuffled) == ["vidspeech-000", "vidtone-000"]


def test_index_vocabulary_and_config(features):
    out, _ = features
    index = read_index(out)
    shards_ = index.pop("shard")
    index[["visual", "audio"]] = index[["visual", "audio"]].map(list)
    assert index.to_dict("list") == {"clip_id": ["vidspeech-000", "vidtone-000"], "n_seconds": [3, 3],
                                     "split": ["val", "train"], "fold": [4000, 3], "visual": [[3], [0, 3]],
                                     "audio": [[1], [2]]}
    assert all(u.startswith("features/") and u.endswith("/features.tar") for u in shards_)  # relative to the root
    assert shards_.nunique() == 2
    pd.testing.assert_frame_equal(read_vocabulary(out), VOCABULARY)
    config = read_feature_config(out)
    assert config["preset"] == "paper" and config["frames_per_second"] == 100 and config["mel_bins"] == 64
    assert (config["window"], config["hop"], config["window_type"]) == (400, 160, "hamming")


def test_a_fresh_root_gives_byte_identical_shards_and_the_same_root_reuses_them(features, inputs, tmp_path):
    out, _ = features
    fresh = extract_features(*inputs, tmp_path / "fresh", root_with(inputs[0].parent / "data", tmp_path / "data"),
                             FeatureConfig(preset="paper", batch_seconds=1000, device="cpu"), progress=False)
    assert fresh["shards_computed"] == 4
    assert list(dataroot.read_manifest(tmp_path / "fresh")["sha256"]) == list(dataroot.read_manifest(out)["sha256"])
    again = extract_features(*inputs, tmp_path / "again", DataRoot(out / "data"), CFG, progress=False)
    assert (again["shards_reused"], again["shards_computed"], again["clips_computed"]) == (4, 0, 0)
    assert (tmp_path / "again" / "index.parquet").read_bytes() == (out / "index.parquet").read_bytes()


def test_a_flipped_bit_in_a_feature_shard_is_caught_and_the_unit_recomputed(features, inputs, tmp_path):
    """Before: a reused feature unit was never checked against its commit record, so a flipped
    bit in a shard went on into training."""
    import shutil

    from mmvideos.data import integrity

    out, _ = features
    shutil.copytree(out / "data", tmp_path / "data")
    integrity._VERIFIED.clear()  # as in a new process
    shard = next(p for p in sorted((tmp_path / "data" / "features").rglob("*"))
                 if p.is_file() and p.name != "COMMIT.json")
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x10
    shard.write_bytes(bytes(data))
    again = extract_features(*inputs, tmp_path / "again", DataRoot(tmp_path / "data"), CFG, progress=False)
    assert (again["shards_reused"], again["shards_computed"]) == (3, 1)
    assert list(dataroot.read_manifest(tmp_path / "again")["sha256"]) == list(dataroot.read_manifest(out)["sha256"])
    assert len(list((tmp_path / "data" / "quarantine" / "features").iterdir())) == 1


def test_unknown_label_is_an_error(inputs, tmp_path):
    clips_dir, labels_dir = inputs
    bad = tmp_path / "labels"
    labels = pd.read_parquet(labels_dir / "labels.parquet")
    labels.at[0, "audio_labels"] = ["/m/not-in-vocab"]
    labels.at[0, "label_ids"] = ["/m/not-in-vocab"]
    write_parquet(labels, bad / "labels.parquet")
    write_parquet(VOCABULARY, bad / "vocabulary.parquet")
    with pytest.raises(ValueError, match="not-in-vocab"):
        extract_features(clips_dir, bad, tmp_path / "out", root_with(clips_dir.parent / "data", tmp_path / "data"), CFG,
                         progress=False)


def test_labels_that_merge_labels_pruned_are_no_targets(inputs, tmp_path):
    clips_dir, labels_dir = inputs
    pruned = tmp_path / "labels"
    labels = pd.read_parquet(labels_dir / "labels.parquet")
    labels.at[0, "visual_labels"] = ["n02084071", "/m/09x0r", "n-too-rare"]  # annotated, below min_count
    write_parquet(labels, pruned / "labels.parquet")
    write_parquet(VOCABULARY, pruned / "vocabulary.parquet")
    extract_features(clips_dir, pruned, tmp_path / "out", root_with(clips_dir.parent / "data", tmp_path / "data"), CFG,
                     progress=False)
    tone = next(r for r in iter_features(tmp_path / "out", root=str(tmp_path / "data")) if r.clip_id == "vidtone-000")
    assert tone.visual.tolist() == [0, 3] and tone.audio.tolist() == [2]


def test_batched_transform_keeps_clips_apart():
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (2 * SR + 5, 500, SR)]
    mels = log_mel_seconds(waves, "paper", "cpu")
    assert [m.shape for m in mels] == [(2, 100, 64), (0, 100, 64), (1, 100, 64)]
    np.testing.assert_array_equal(mels[2], log_mel_seconds([waves[2]])[0])


def test_bad_config_raises():
    with pytest.raises(ValueError):
        FeatureConfig(preset="mfcc")
    with pytest.raises(ValueError):
        FeatureConfig(batch_seconds=0)
    with pytest.raises(ValueError):
        FeatureConfig(device="tpu")


def test_feature_throughput_reports_a_rate():
    assert feature_throughput(seconds=4, device="cpu", batch_seconds=2) > 0


def test_feature_shards_on_gcs(inputs, features, tmp_path, gcs_bucket):
    """Labels read from gs://, feature shards written to a gs:// data root and streamed back."""
    gcs_bucket("mm")
    clips_dir, labels_dir = inputs
    upload_dir(labels_dir, "gs://mm/labels")
    upload_dir(clips_dir.parent / "data", "gs://mm/root")  # the clip units, in the root that reads them
    extract_features(clips_dir, "gs://mm/labels", tmp_path, DataRoot("gs://mm/root"), CFG, progress=False)
    out, _ = features
    assert list(dataroot.read_manifest(tmp_path)["sha256"]) == list(dataroot.read_manifest(out)["sha256"])
    assert read_index(tmp_path)["shard"].str.startswith("features/").all()  # relative to any data root
    assert read_index(tmp_path, "gs://mm/root")["shard"].str.startswith("gs://mm/root/features/").all()
    remote = list(iter_features(tmp_path, split="val", root="gs://mm/root"))
    assert all(isinstance(r, FeatureRecord) for r in remote)
    assert [r.clip_id for r in remote] == ["vidspeech-000"] and remote[0].mel.shape == (3, 100, 64)
