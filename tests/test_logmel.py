"""The log-mel front end against a float64 NumPy reference of the VGGish specification."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmvideos.features.logmel import frames_per_second, log_mel, num_frames


def _reference_vggish(samples: np.ndarray, log_offset: float = 0.01) -> np.ndarray:
    """VGGish's ``mel_features.py`` recipe, written out in float64 with plain NumPy."""
    window_length, hop_length, fft_length = 400, 160, 512
    n_frames = 1 + (len(samples) - window_length) // hop_length
    frames = np.stack([samples[i * hop_length: i * hop_length + window_length] for i in range(n_frames)])
    periodic_hann = 0.5 - 0.5 * np.cos(2 * np.pi / window_length * np.arange(window_length))
    magnitude = np.abs(np.fft.rfft(frames * periodic_hann, fft_length))

    def hertz_to_mel(hz):
        return 1127.0 * np.log(1.0 + hz / 700.0)

    bins_mel = hertz_to_mel(np.linspace(0.0, 8000.0, fft_length // 2 + 1))
    edges = np.linspace(hertz_to_mel(125.0), hertz_to_mel(7500.0), 64 + 2)
    weights = np.empty((fft_length // 2 + 1, 64))
    for i in range(64):
        lower, centre, upper = edges[i:i + 3]
        weights[:, i] = np.maximum(0.0, np.minimum((bins_mel - lower) / (centre - lower),
                                                   (upper - bins_mel) / (upper - centre)))
    weights[0, :] = 0.0
    return np.log(magnitude @ weights + log_offset)


@pytest.fixture(scope="module")
def chirp() -> np.ndarray:
    """2.3 s of a 200 Hz -> 6 kHz chirp plus noise: energy in every mel band."""
    rng = np.random.default_rng(0)
    t = np.arange(int(2.3 * 16000)) / 16000
    tone = 0.5 * np.sin(2 * np.pi * (200 * t + (6000 - 200) / (2 * 2.3) * t ** 2))
    return (tone + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.mark.parametrize("preset, offset", [("vggish", 0.01), ("yamnet", 0.001)])
def test_matches_numpy_reference(chirp, preset, offset):
    ours = log_mel(chirp, 16000, preset)
    expected = _reference_vggish(chirp.astype(np.float64), offset)
    assert ours.dtype == torch.float32 and ours.shape == expected.shape == (1 + (chirp.size - 400) // 160, 64)
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-4, rtol=0)


def test_paper_preset_gives_100_frames_per_second(chirp):
    features = frames_per_second(chirp, 16000)
    assert features.shape == (2, 100, 64)  # the last 0.3 s is dropped
    assert num_frames(16000) == 100 and log_mel(chirp[:16000]).shape == (100, 64)
    assert torch.isfinite(features).all()
    # Each second is transformed on its own.
    torch.testing.assert_close(features[1], log_mel(chirp[16000:32000]))


def test_batch_equals_unbatched(chirp):
    batch = torch.from_numpy(np.stack([chirp[:16000], chirp[16000:32000]]))
    for preset in ("paper", "vggish", "yamnet"):
        batched = log_mel(batch, 16000, preset)
        torch.testing.assert_close(batched[1], log_mel(batch[1], 16000, preset))
        torch.testing.assert_close(batched[0], log_mel(batch[0].numpy(), 16000, preset))


def test_resamples_other_rates(chirp):
    # 1 s at 32 kHz is resampled to 16,000 samples -> 100 paper frames.
    wave32 = torch.from_numpy(np.repeat(chirp[:16000], 2))
    assert log_mel(wave32, 32000).shape == (100, 64)
    assert frames_per_second(wave32, 32000).shape == (1, 100, 64)


def test_rejects_unknown_preset_and_short_input():
    with pytest.raises(ValueError):
        log_mel(np.zeros(16000, np.float32), 16000, "mfcc")
    with pytest.raises(ValueError):
        log_mel(np.zeros(100, np.float32), 16000, "vggish")
    assert frames_per_second(np.zeros(8000, np.float32)).shape == (0, 100, 64)
