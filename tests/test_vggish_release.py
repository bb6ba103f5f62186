"""The released-VGGish plug-in against an independent re-implementation of Google's release.

The reference follows the TensorFlow release step by step in plain NumPy and torch functionals:
``vggish_input.waveform_to_examples`` (``mel_features.py`` log-mel, non-overlapping 96-frame
examples), ``vggish_slim.py`` (six 3x3 convs with ReLU, four 2x2 pools, channels-last flatten,
FC 4096, FC 4096, FC 128 with ``activation_fn=None``) and ``vggish_postprocess.py`` (PCA,
clip to [-2, 2], scale to 0..255, ``astype(uint8)``). Weights are random, in torchvggish's layout.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmvideos.benchmarks.embeddings import embedding_extractor
from mmvideos.evaluation.baselines import load_released_vggish, vggish_examples

CONVS = ("features.0", "features.3", "features.6", "features.8", "features.11", "features.13")
POOL_AFTER = {"features.0", "features.3", "features.8", "features.13"}  # 64 | 128 | 256 256 | 512 512


def _examples(samples: np.ndarray) -> np.ndarray:
    """``waveform_to_examples`` at 16 kHz in float64: ``[P, 96, 64]``."""
    window, hop, fft = 400, 160, 512
    count = 1 + (len(samples) - window) // hop
    frames = np.stack([samples[i * hop: i * hop + window] for i in range(count)])
    hann = 0.5 - 0.5 * np.cos(2 * np.pi / window * np.arange(window))  # periodic
    magnitude = np.abs(np.fft.rfft(frames * hann, fft))

    def mel(hz):
        return 1127.0 * np.log(1.0 + hz / 700.0)

    bins = mel(np.linspace(0.0, 8000.0, fft // 2 + 1))
    edges = np.linspace(mel(125.0), mel(7500.0), 66)
    weights = np.stack([np.maximum(0.0, np.minimum((bins - lo) / (mid - lo), (hi - bins) / (hi - mid)))
                        for lo, mid, hi in zip(edges, edges[1:], edges[2:])], axis=1)
    weights[0] = 0.0
    log_mel = np.log(magnitude @ weights + 0.01)
    whole = len(log_mel) // 96
    return log_mel[:whole * 96].reshape(whole, 96, 64)


def _graph(state: dict, examples: np.ndarray) -> np.ndarray:
    """``vggish_slim`` on ``[P, 96, 64]`` -> the pre-activation ``embedding`` ``[P, 128]``."""
    x = torch.as_tensor(examples, dtype=torch.float64)[:, None]
    for key in CONVS:
        x = F.relu(F.conv2d(x, state[f"{key}.weight"].double(), state[f"{key}.bias"].double(), padding=1))
        if key in POOL_AFTER:
            x = F.max_pool2d(x, 2)
    x = x.permute(0, 2, 3, 1).reshape(len(x), -1)  # TensorFlow flattens channels last
    for i, key in enumerate(("embeddings.0", "embeddings.2", "embeddings.4")):
        x = F.linear(x, state[f"{key}.weight"].double(), state[f"{key}.bias"].double())
        if i < 2:
            x = F.relu(x)  # fc1_1, fc1_2; fc2 (the embedding) has activation_fn=None
    return x.numpy()


def _postprocess(embeddings: np.ndarray, matrix: np.ndarray, means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``vggish_postprocess.Postprocessor``: (scaled float values, their uint8 conversion)."""
    projected = (matrix @ (embeddings.T - means[:, None])).T
    scaled = (np.clip(projected, -2.0, 2.0) + 2.0) * (255.0 / 4.0)
    return scaled, scaled.astype(np.uint8)


def _torchvggish_state(seed: int) -> dict[str, torch.Tensor]:
    """Random weights with torchvggish's names and shapes (``vggish-10086976.pth``'s layout)."""
    generator = torch.Generator().manual_seed(seed)
    state, channels = {}, 1
    for key, width in zip(CONVS, (64, 128, 256, 256, 512, 512)):
        state[f"{key}.weight"] = torch.randn(width, channels, 3, 3, generator=generator) * (2 / (9 * channels)) ** 0.5
        state[f"{key}.bias"] = torch.randn(width, generator=generator) * 0.01
        channels = width
    for key, (n_in, n_out) in zip(("embeddings.0", "embeddings.2", "embeddings.4"),
                                  ((512 * 6 * 4, 4096), (4096, 4096), (4096, 128))):
        state[f"{key}.weight"] = torch.randn(n_out, n_in, generator=generator) * (1 / n_in) ** 0.5
        state[f"{key}.bias"] = torch.randn(n_out, generator=generator) * 0.1
    return state


def write_release(folder: Path, samples: np.ndarray) -> tuple[Path, Path, dict, np.ndarray, np.ndarray]:
    """Random torchvggish-layout weights and a PCA spreading ``samples``' embeddings over [-3, 3].

    Returns:
        (weights file, PCA file, the state dict, PCA matrix, PCA means)
    """
    state = _torchvggish_state(3)
    raw = _graph(state, _examples(samples.astype(np.float64)))
    rng = np.random.default_rng(0)
    means = raw.mean(0) + 0.1 * raw.std(0) * rng.standard_normal(128)
    matrix = np.linalg.qr(rng.standard_normal((128, 128)))[0] * 2.0 / max(raw.std(0).mean(), 1e-6)
    torch.save(state, folder / "vggish-10086976.pth")
    # the released PCA file holds numpy arrays
    torch.save({"pca_eigen_vectors": matrix, "pca_means": means}, folder / "vggish_pca_params.pth")
    return folder / "vggish-10086976.pth", folder / "vggish_pca_params.pth", state, matrix, means


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    """3.3 s of a chirp, noise and a gap: three whole 0.96-s examples."""
    rng = np.random.default_rng(1)
    t = np.arange(int(3.3 * 16000)) / 16000
    wave = 0.4 * np.sin(2 * np.pi * (150 * t + 900 * t ** 2)) + 0.05 * rng.standard_normal(t.size)
    wave[20000:26000] = 0.0
    return wave.astype(np.float32)


@pytest.fixture(scope="module")
def release(tmp_path_factory, clip):
    return write_release(tmp_path_factory.mktemp("vggish"), clip)


def test_examples_are_the_release_framing(clip):
    ours = vggish_examples(clip)
    expected = _examples(clip.astype(np.float64))
    assert ours.shape == expected.shape == (3, 96, 64)
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-4, rtol=0)
    assert vggish_examples(clip[:4000]).shape == (1, 96, 64)  # short clips: one example, padded
    assert vggish_examples(clip, seconds=5).shape == (5, 96, 64)  # 5 s of samples: 498 frames


def test_embeddings_equal_the_release(release, clip):
    weights, pca, state, matrix, means = release
    model, key = load_released_vggish(str(weights), str(pca))
    assert key.startswith("released-vggish-examples-")
    raw = _graph(state, _examples(clip.astype(np.float64)))
    assert (raw < 0).mean() > 0.2  # a ReLU here would zero these before the PCA
    with torch.no_grad():
        examples = vggish_examples(clip)[:, None]
        pre_activation = model.pre_activation(examples).double().numpy()
        got = model.embed(examples).double().numpy()
    scale = np.abs(raw).max()
    np.testing.assert_allclose(pre_activation / scale, raw / scale, atol=1e-4, rtol=0)
    scaled, quantised = _postprocess(raw, matrix, means)
    assert 0 < (scaled == 0).mean() + (scaled == 255).mean() < 0.5  # the clipping is exercised
    # the same 8-bit codes, but where float32 rounding straddles an integer step of the reference
    straddles = (np.abs(scaled - np.round(scaled)) < 1e-2) & (scaled > 0) & (scaled < 255)
    settled = ~straddles
    assert settled.mean() > 0.9
    np.testing.assert_array_equal(got[settled], quantised[settled])
    assert np.abs(got - quantised).max() <= 1


def test_concat_extractor_embeds_the_benchmark_length(release, clip):
    weights, pca, state, matrix, means = release
    model, key = load_released_vggish(str(weights), str(pca))
    extractor = embedding_extractor("vggish", key, model.embed, pooling="concat", seconds=5,
                                    front_end=vggish_examples)
    vector = extractor.fn(extractor.front_end(clip))
    padded = np.pad(clip.astype(np.float64), (0, 5 * 16000 - clip.size))  # ESC-50's digital silence
    _, expected = _postprocess(_graph(state, _examples(padded)[:5]), matrix, means)
    assert vector.shape == (5 * 128,)
    assert np.abs(vector - expected.reshape(-1)).max() <= 1
