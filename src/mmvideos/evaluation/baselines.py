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

Input, as Google's ``vggish_input.waveform_to_examples``: the clip's 16 kHz samples go through
the project's exact ``vggish`` front end (periodic Hann, 25 ms window, 10 ms hop, |FFT 512|, 64
HTK mel bands 125-7500 Hz, ``log(mel + 0.01)``, no padding) and are cut into non-overlapping
0.96-s examples of 96 frames (:func:`vggish_examples`); the four pools give VGGish's own 6x4
map. The one input difference from the TensorFlow release: clips at other sample rates are
decoded to 16 kHz by FFmpeg's resampler (PyAV), where Google's demo uses ``resampy``.

The embedding is the 128-d layer *before* its ReLU, as in Google's ``vggish_slim.py``
(``activation_fn=None`` on ``fc2``; torchvggish keeps a ReLU there, its issue #24): the released
PCA parameters were fitted to those pre-activation values, and a ReLU first would zero about
half the dimensions before the projection.

Post-processing, as Google's ``vggish_postprocess.py`` does: ``PCA (x - means)``, clip to
[-2, 2], scale to 0..255 and convert to 8 bits by truncation (NumPy's ``astype(uint8)``;
torchvggish rounds instead). The released AudioSet embeddings were made that way.
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

#: Where users get the two files (see docs/transfer.md); never fetched at run time.
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
        # truncation, not rounding: the release converts the non-negative floats with astype(uint8)
        return torch.floor((projected.clamp(low, high) - low) * (255.0 / (high - low)))


class ReleasedVGGish(nn.Module):
    """The released VGGish: ``embed`` maps examples ``[B, 1, 96, 64]`` (:func:`vggish_examples`) to ``[B, 128]``."""

    def __init__(self, network: AudioTagger, postprocess: Postprocess | None) -> None:
        super().__init__()
        self.network = network
        self.postprocess = postprocess

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 1, 96, 64]`` -> the 128-d embedding before its ReLU (the release's ``embedding`` tensor)."""
        if x.dim() == 3:
            x = x.unsqueeze(1)
        if x.shape[-2:] != (VGGISH_FRAMES, 64):
            raise ValueError(f"VGGish takes [B, 1, {VGGISH_FRAMES}, 64] examples, got {tuple(x.shape)}")
        head = self.network.embedding
        if not isinstance(head[-1], nn.ReLU):
            raise ValueError("the vggish head must end with the embedding's ReLU")
        return head[:-1](self.network.backbone(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 1, 96, 64]`` examples -> post-processed embeddings (raw pre-activation ones without PCA)."""
        embeddings = self.pre_activation(x)
        return embeddings if self.postprocess is None else self.postprocess(embeddings)


def vggish_examples(samples: np.ndarray, seconds: int | None = None) -> torch.Tensor:
    """16 kHz mono samples -> ``[P, 96, 64]``: VGGish's non-overlapping 0.96-s log-mel examples.

    Args:
        samples: float samples in [-1, 1).
        seconds: bring the clip to this length first (cut, or append digital silence as ESC-50
            pads its short clips) and keep its first ``seconds`` examples, so the concatenated
            embeddings have the same width for every clip (5 s -> 498 frames -> 5 examples);
            None = every whole example of the clip, which is at least one (shorter clips are
            padded with silence to one example).

    Returns:
        float32 examples, as ``vggish_input.waveform_to_examples`` frames them.
    """
    from mmvideos.features.logmel import SAMPLE_RATE, log_mel
    from mmvideos.features.presets import HOP, WINDOW

    wanted = seconds * SAMPLE_RATE if seconds else max(samples.size, WINDOW + (VGGISH_FRAMES - 1) * HOP)
    samples = np.pad(samples[:wanted], (0, max(0, wanted - samples.size))).astype(np.float32)
    frames = log_mel(samples, SAMPLE_RATE, "vggish")  # [T, 64]
    count = seconds or len(frames) // VGGISH_FRAMES
    if len(frames) < count * VGGISH_FRAMES:
        raise ValueError(f"{seconds} s give {len(frames)} frames, fewer than {count} VGGish examples")
    return frames[:count * VGGISH_FRAMES].reshape(count, VGGISH_FRAMES, -1)


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
    # "-examples": vectors from 0.96-s examples of the vggish front end, before the final ReLU;
    # caches written by earlier versions (1-s paper frames, after the ReLU) are never reused
    key = f"released-vggish-examples-{hashlib.sha256(digest.encode()).hexdigest()[:16]}"
    return ReleasedVGGish(network, postprocess).eval(), key
