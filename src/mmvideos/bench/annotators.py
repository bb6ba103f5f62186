"""Throughput of the annotators on this machine: frames/s and audio-seconds/s.

Times ``Annotator.predict`` alone (pre-processing, front end and model, not JPEG or WAV
decoding) on real inputs: scikit-image photos as 224x224 frames, and 1-s segments of a chirp
with noise. Run ``python -m mmvideos.bench.annotators`` or call ``benchmark_annotators``.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from mmvideos.annotators import load_annotator
from mmvideos.stages.annotate import AudioConfig, VisualConfig

#: Frames the paper's visual annotation labels: 15 M clips of about 4 s at 3 fps.
PAPER_FRAMES = 180e6


def paper_frames_line(frames_per_s: float, where: str) -> str:
    """The frames/s that label the paper's 180 M frames in a day, next to a measured rate."""
    need = PAPER_FRAMES / 86400
    return (f"Labelling the paper's 180 M frames in a day takes {need:,.0f} frames/s; the visual annotator "
            f"labels {frames_per_s:,.0f} frames/s {where}: {need / frames_per_s:,.1f} such devices label them "
            f"in a day, one alone in {PAPER_FRAMES / frames_per_s / 86400:,.1f} days.")


def _photo_frames(n: int) -> np.ndarray:
    from PIL import Image
    from skimage import data

    photos = [np.asarray(Image.fromarray(p).resize((224, 224))) for p in (data.chelsea(), data.coffee(), data.astronaut())]
    return np.stack([photos[i % len(photos)] for i in range(n)])  # uint8 [n, 224, 224, 3]


def _segments(n: int) -> np.ndarray:
    t = np.arange(16000) / 16000
    rng = np.random.default_rng(0)
    chirp = 0.3 * np.sin(2 * np.pi * (200 + 3000 * t) * t)
    return (chirp + 0.05 * rng.standard_normal((n, 16000))).astype(np.float32)  # [n, 16000]


def _rate(predict, batch: np.ndarray, repeats: int) -> float:
    predict(batch[: min(len(batch), 8)])  # warm-up: lazy initialisation, allocator, CUDA kernels
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        predict(batch)
        best = min(best, time.perf_counter() - start)
    return len(batch) / best


def benchmark_annotators(visual: VisualConfig = VisualConfig(), audio: AudioConfig = AudioConfig(),
                         frames: int = 64, seconds: int = 256, repeats: int = 3) -> dict:
    """Time both annotators' batched ``predict``; print and return the best-of-``repeats`` rates.

    Args:
        visual, audio: the annotators to time (model, weights, device, ...).
        frames: frames per visual batch; seconds: 1-s segments per audio batch.
        repeats: timed runs after one warm-up; the fastest counts.

    Returns:
        ``{"visual": {..., "frames_per_s"}, "audio": {..., "audio_seconds_per_s"}}``.
    """
    results = {}
    for modality, cfg, batch, unit in (("visual", visual, _photo_frames(frames), "frames_per_s"),
                                       ("audio", audio, _segments(seconds), "audio_seconds_per_s")):
        annotator = load_annotator(modality, cfg)
        rate = _rate(annotator.predict, batch, repeats)
        results[modality] = {"annotator": annotator.name, "device": cfg.device, "batch": len(batch),
                             unit: round(rate, 1)}
        line = f"{modality:6s} {annotator.name:20s} {cfg.device:5s} batch {len(batch):4d}: {rate:9.1f} {unit.replace('_per_s', '/s')}"
        onnx = modality == "visual" and (cfg.runtime == "onnx" or (cfg.runtime == "auto" and cfg.device == "cpu"))
        if onnx:  # the same network in eager PyTorch, for the ratio
            eager = _rate(load_annotator("visual", dataclasses.replace(cfg, runtime="torch")).predict, batch, repeats)
            results[modality] |= {"runtime": "onnxruntime", "torch_frames_per_s": round(eager, 1)}
            line += f" (onnxruntime; eager PyTorch {eager:.1f}: x{rate / eager:.1f})"
        elif modality == "audio" and annotator.name in ("yamnet", "onnx"):
            from mmvideos.annotators.audio import onnx_runtime

            results[modality]["runtime"] = {"onnx": "onnxruntime", "torch": "torch"}[onnx_runtime(cfg)]
            line += f" ({results[modality]['runtime']})"
        print(line)
    return results


if __name__ == "__main__":
    benchmark_annotators()
