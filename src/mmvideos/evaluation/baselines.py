"""Google's released VGGish (trained on YouTube-100M) as a transfer baseline, the paper's main one.

The weights come in torchvggish's layout (github.com/harritaylor/torchvggish, release v0.1): a
state dict of its ``VGG`` module in ``vggish-10086976.pth`` and the PCA parameters of the
embedding post-processing in ``vggish_pca_params-970ea276.pth``. Nothing is downloaded here:
``transfer.baselines`` names local paths or ``gs://`` URIs of the two files.

The network is our ``vggish`` architecture (the same layers, :mod:`mmvideos.models.vggish`), so
the mapping is one to one:

=====================================  ====================================
torchvggish                            ``vggish`` (``AudioTagger``)
=====================================  ====================================
``features.{0,3,6,8,11,13}``           the six 3x3 convs of ``backbone``
``embeddings.{0,2,4}``                 the three linear layers of ``embedding``
=====================================  ====================================

One tensor needs more than a copy: torchvggish flattens the last ``[512, 6, 4]`` map in
TensorFlow's channels-last order (``h, w, c``) before ``embeddings.0``, ours in ``c, h, w``
order, so that layer's input columns are permuted. Our classifier layer has no counterpart and
stays unused: the baseline only embeds.

Input: VGGish takes 96 frames (0.96 s) of log(mel + 0.01) in 64 bands from 125 to 7500 Hz; the
paper-preset 1-s frames are the same features over 100 frames, so each is cut to its first 96
(then the four pools give VGGish's own 6x4 map). The one difference left is the window (our
Hamming, VGGish's Hann).

Post-processing, as torchvggish's ``Postprocessor`` (and Google's ``vggish_postprocess.py``)
does: ``PCA (x - means)``, clip to [-2, 2], quantise to 0..255. The released AudioSet
embeddings were made that way.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch import nn

from mmvideos.data import storage
from mmvideos.data.files import sha256_file
from mmvideos.models import build_model
from mmvideos.models.tagger import EMBEDDING_DIM, AudioTagger

#: Where users get the two files (see the README); never fetched at run time.
TORCHVGGISH_RELEASE = {
    "weights": "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth",
    "pca": "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish_pca_params-970ea276.pth",
}
VGGISH_FRAMES = 96            # VGGish's 0.96-s patch
QUANTIZE_RANGE = (-2.0, 2.0)  # vggish_params.QUANTIZE_MIN_VAL, QUANTIZE_MAX_VAL
CONV_KEYS = ("features.0", "features.3", "features.6", "features.8", "features.11", "features.13")
LINEAR_KEYS = ("embeddings.0", "embeddings.2", "embeddings.4")
#: numpy types the PCA file may hold (torchvggish converts its arrays with torch.as_tensor).
_NUMPY_GLOBALS = [np._core.multiarray._reconstruct, np.ndarray, np.dtype, np.dtypes.Float32DType,
                  np.dtypes.Float64DType]


class Postprocess(nn.Module):
    """PCA, clipping to [-2, 2] and 8-bit quantisation of ``[B, 128]`` embeddings (0..255 floats)."""

    def __init__(self, pca_matrix: torch.Tensor, pca_means: torch.Tensor) -> None:
        super().__init__()
        if pca_matrix.shape != (EMBEDDING_DIM, EMBEDDING_DIM) or pca_means.numel() != EMBEDDING_DIM:
            raise ValueError(f"PCA parameters must be [128, 128] and [128], got {tuple(pca_matrix.shape)} and "
                             f"{tuple(pca_means.shape)}")
        self.register_buffer("pca_matrix", pca_matrix.float())         # [128 out, 128 in]
        self.register_buffer("pca_means", pca_means.float().reshape(-1))  # [128]

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``[B, 128]`` raw embeddings -> ``[B, 128]`` quantised values in 0..255."""
        low, high = QUANTIZE_RANGE
        projected = (embeddings - self.pca_means) @ self.pca_matrix.T
        return torch.round((projected.clamp(low, high) - low) * (255.0 / (high - low)))


class ReleasedVGGish(nn.Module):
    """The released VGGish on our frames: ``embed`` maps ``[B, 1, T >= 96, 64]`` to ``[B, 128]``."""

    def __init__(self, network: AudioTagger, postprocess: Postprocess | None) -> None:
        super().__init__()
        self.network = network
        self.postprocess = postprocess

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Log-mel frames -> the (post-processed) embedding of their first 96 frames."""
        if x.dim() == 3:
            x = x.unsqueeze(1)
        embeddings = self.network.embed(x[:, :, :VGGISH_FRAMES])
        return embeddings if self.postprocess is None else self.postprocess(embeddings)


def map_torchvggish(state: dict[str, torch.Tensor], network: AudioTagger) -> dict[str, torch.Tensor]:
    """torchvggish's ``VGG`` state dict -> the matching entries of a full-width ``vggish`` network's.

    Raises:
        ValueError: a tensor is missing or its shape does not match the architecture.
    """
    convs = [m for m in network.backbone.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in network.embedding.modules() if isinstance(m, nn.Linear)]
    names = {id(m): name for name, m in network.named_modules()}
    mapped = {}
    for key, module in zip(CONV_KEYS + LINEAR_KEYS, convs + linears, strict=True):
        for part in ("weight", "bias"):
            source = f"{key}.{part}"
            if source not in state:
                raise ValueError(f"torchvggish state dict has no {source!r}")
            tensor = torch.as_tensor(state[source]).float()
            if source == "embeddings.0.weight":
                tensor = _channels_first_columns(tensor, module)
            target = getattr(module, part)
            if tensor.shape != target.shape:
                raise ValueError(f"{source}: shape {tuple(tensor.shape)}, the vggish layer wants {tuple(target.shape)}")
            mapped[f"{names[id(module)]}.{part}"] = tensor
    return mapped


def _channels_first_columns(weight: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    """Reorder the input columns of the first head layer from ``h, w, c`` to ``c, h, w``."""
    channels, height, width = 512, 6, 4  # the last map of a 96x64 (or 100x64) input
    if weight.shape != (layer.out_features, channels * height * width):
        raise ValueError(f"embeddings.0.weight: shape {tuple(weight.shape)}, the vggish layer wants "
                         f"{(layer.out_features, layer.in_features)}")
    return weight.reshape(-1, height, width, channels).permute(0, 3, 1, 2).reshape(weight.shape[0], -1)


def _load(uri: str) -> tuple[dict, str]:
    """A ``torch.save``d dict (tensors or numpy arrays, no code) and the file's SHA-256."""
    with storage.local_copy(uri) as path:
        with torch.serialization.safe_globals(_NUMPY_GLOBALS):
            state = torch.load(path, map_location="cpu", weights_only=True)
        return state, sha256_file(path)


def _pca(state: dict) -> Postprocess | None:
    """The post-processing from a PCA file, or from the ``pproc.*`` entries of a whole-module dict."""
    for prefix in ("", "pproc."):
        matrix = state.get(f"{prefix}pca_eigen_vectors", state.get(f"{prefix}pca_matrix"))
        if matrix is not None:
            return Postprocess(torch.as_tensor(matrix), torch.as_tensor(state[f"{prefix}pca_means"]))
    return None


def load_released_vggish(weights: str, pca: str = "") -> tuple[ReleasedVGGish, str]:
    """Load the released VGGish from torchvggish-layout files (local paths or ``gs://`` URIs).

    Args:
        weights: ``vggish-10086976.pth`` (or a whole torchvggish ``VGGish`` state dict, whose
            ``pproc.*`` entries then give the post-processing).
        pca: ``vggish_pca_params-970ea276.pth``; "" = the PCA entries of ``weights`` if any,
            else raw embeddings without post-processing.

    Returns:
        (the model, in eval mode; ``released-vggish-<16 hex of SHA-256 over the files>``, a key
        naming these weights for the embedding cache)
    """
    state, digest = _load(weights)
    postprocess = _pca(state)
    if pca:
        pca_state, pca_digest = _load(pca)
        postprocess = _pca(pca_state)
        if postprocess is None:
            raise ValueError(f"{pca}: no pca_eigen_vectors / pca_means")
        digest += pca_digest
    network = build_model("vggish", num_classes=1)
    network.load_state_dict(map_torchvggish(state, network), strict=False)
    key = f"released-vggish-{hashlib.sha256(digest.encode()).hexdigest()[:16]}"
    return ReleasedVGGish(network, postprocess).eval(), key
