"""Using the model: ``mmvideos embed``, ``mmvideos.load_encoder`` and the HEAR 2021 API module give
the embeddings the pipeline's transfer step computes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from test_benchmarks import make_esc50, sounds

import mmvideos
from media_fixtures import tone, write_media
from mmvideos.benchmarks.embeddings import weights_key
from mmvideos.cli import main
from mmvideos.stages.transfer import TransferConfig, transfer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def transferred(tmp_path_factory, checkpoint):
    """The transfer step on an ESC-50-layout benchmark: its root and the embedding cache it filled."""
    root = make_esc50(tmp_path_factory.mktemp("esc50"), sounds(tmp_path_factory.mktemp("voices")))
    cache, out = tmp_path_factory.mktemp("cache"), tmp_path_factory.mktemp("out")
    transfer("esc50", root, checkpoint, out, TransferConfig(val_rounds=1, max_steps=50), progress=False, cache_dir=cache)
    return root, cache, out


def test_embed_gives_the_transfer_steps_embeddings(transferred, checkpoint, tmp_path, capsys):
    root, cache, _ = transferred
    wav = sorted((root / "audio").glob("*.wav"))[0]
    (cached,) = (cache / f"{weights_key(checkpoint, 'vggish_bn')}-concat5s").glob(f"*/{wav.stem}-*.npy")
    assert main(["embed", str(wav), "--model", str(checkpoint), "--output", str(tmp_path / "e.npy"),
                 "--pooling", "concat", "--seconds", "5"]) == 0
    assert "embedded 1 of 1 files (1 s of audio) with vggish_bn x0.125: 640-d clip embeddings" in capsys.readouterr().out
    np.testing.assert_allclose(np.load(tmp_path / "e.npy")[0], np.load(cached), rtol=0, atol=1e-6)
    # the per-second embeddings are the clip vector's first second (the rest is the silence padding 1.5 s to 5)
    seconds = np.load(tmp_path / "e.seconds.npy")
    assert seconds.shape == (1, 128)
    np.testing.assert_allclose(seconds[0], np.load(cached)[:128], rtol=0, atol=1e-6)
    assert pd.read_csv(tmp_path / "e.files.csv").to_dict("records") == [
        {"path": str(wav), "seconds": 1, "first_second_row": 0}]


def test_embed_reads_folders_and_videos_into_parquet(checkpoint, tmp_path, capsys):
    folder = tmp_path / "mine"
    (folder / "sub").mkdir(parents=True)
    write_media(folder / "street.mp4", 3.0, audio=tone(3.0, hz=500.0))
    (folder / "sub" / "notes.wav").write_bytes(b"not audio at all")
    assert main(["embed", str(folder), "--model", str(checkpoint), "--output", str(tmp_path / "e.parquet")]) == 1
    shown = capsys.readouterr()
    assert f"skipped {folder / 'sub' / 'notes.wav'}: " in shown.err  # named, and the exit status says so
    table = pd.read_parquet(tmp_path / "e.parquet")
    assert table["path"].tolist() == [str(folder / "street.mp4")] and table["seconds"].tolist() == [3]
    per_second = np.stack(table["second_embeddings"][0])
    assert per_second.shape == (3, 128)
    clip = np.asarray(table["clip_embedding"][0])  # mean_max: the mean and the max over the seconds
    np.testing.assert_allclose(clip, np.concatenate([per_second.mean(0), per_second.max(0)]), rtol=1e-5, atol=1e-6)


def test_load_encoder_embeds_a_waveform_at_any_rate(checkpoint):
    encoder = mmvideos.load_encoder(checkpoint)
    at_16k = tone(2.0, 16000, hz=440.0)
    at_48k = tone(2.0, 48000, hz=440.0)
    first, second = encoder.embed(at_16k, 16000), encoder.embed(at_48k, 48000)
    assert first.shape == second.shape == (2, encoder.embedding_size) and first.dtype == np.float32
    assert np.corrcoef(first.ravel(), second.ravel())[0, 1] > 0.99  # the same sound, resampled
    assert encoder.clip_embedding(at_16k, 16000).shape == (256,)
    with pytest.raises(FileNotFoundError, match="no exported model here"):
        mmvideos.load_encoder(checkpoint.parent)


def test_the_hear_api_contract(checkpoint):
    """What hearvalidator checks (its torch branch), asserted here directly, plus what the values are."""
    import mmvideos.hear as hear

    model = hear.load_model(str(checkpoint))
    assert isinstance(model, torch.nn.Module) and model.sample_rate in (16000, 22050, 44100, 48000)
    assert isinstance(model.scene_embedding_size, int) and isinstance(model.timestamp_embedding_size, int)
    audio = torch.rand(4, int(2.0 * model.sample_rate)) * 2 - 1
    embeddings, timestamps = hear.get_timestamp_embeddings(audio, model)
    assert embeddings.dtype == torch.float32 and embeddings.shape == (4, 41, model.timestamp_embedding_size)
    assert timestamps.shape == embeddings.shape[:2] and timestamps[0, 1] == 50.0
    assert torch.all(torch.abs(torch.diff(timestamps) - 50.0) < 1e-3)
    # the window centred at 500 ms is the pipeline's first non-overlapping second
    encoder = mmvideos.load_encoder(checkpoint)
    np.testing.assert_allclose(embeddings[0, 10].numpy(), encoder.embed(audio[0].numpy(), 16000)[0], atol=1e-5)
    scene = hear.get_scene_embeddings(audio[:3], model)
    assert scene.dtype == torch.float32 and scene.shape == (3, model.scene_embedding_size)
    with pytest.raises(ValueError, match="needs the exported model"):
        hear.load_model()


def test_hearvalidator_passes_the_exported_model(checkpoint):
    done = subprocess.run([sys.executable, "-m", "hearvalidator.validate", "mmvideos.hear", "--model",
                           str(checkpoint), "--device", "cpu"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("Looks good!")


def test_the_model_card_says_what_the_model_was_trained_on_and_how_it_transfers(transferred, checkpoint, tmp_path):
    import json
    import shutil

    from mmvideos.model_card import model_card, write_model_card

    model = tmp_path / "model"
    shutil.copytree(checkpoint, model)
    pd.DataFrame({"index": range(3), "id": ["visual:n1", "visual:n2", "audio:/m/1"], "name": ["dog", "cat", "Bark"],
                  "modality": ["visual", "visual", "audio"], "count": [7, 3, 5]}).to_parquet(model / "vocabulary.parquet")
    (model / "summary.json").write_text(json.dumps({"train_clips": 12, "model": "vggish_bn", "epochs": 2,
                                                    "hardware": "cpu AVX2", "device": "cpu", "gpus": 0,
                                                    "final": {"loss": 0.5}, "val_note": "2 validation clips"}))
    features = tmp_path / "features"
    features.mkdir()
    (features / "labels.json").write_text(json.dumps({"clips": 14, "annotators": {"visual": [
        {"annotator": "efficientnet-lite0", "annotator_version": "v1", "weights_sha256": "ab" * 32}]}}))
    write_model_card(model, features)
    card = (model / "MODEL_CARD.md").read_text()
    assert "# Model card: vggish_bn x0.125" in card and "12 training clips (14 labelled clips in all)" in card
    assert "vocabulary: 3 labels (1 audio, 2 visual)" in card and "dog (7), Bark (5), cat (3)" in card
    assert f"visual: efficientnet-lite0 (v1), weights SHA-256 `{'ab' * 32}`" in card
    assert "| hardware | cpu AVX2 (cpu, 0 GPUs) |" in card and "validation not meaningful: 2 validation clips" in card
    assert "not evaluated in this card's step" in card
    # the collect step's rewrite: the same card from the model folder alone, with the transfer results
    _, _, out = transferred
    metrics = json.loads((out / "metrics.json").read_text())
    full = model_card(model, transfers=[out])
    pretrained = next(r for r in metrics["rows"] if r["model"] == "pretrained")
    assert f"| esc50 | pretrained | 30 | 5 | {100 * pretrained['top1']:.1f} ± " in full
    assert f"weights SHA-256 `{'ab' * 32}`" in full  # labels.json was kept beside the model
