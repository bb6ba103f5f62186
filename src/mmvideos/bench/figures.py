"""Figures of ``mmvideos bench``, each measured next to its reference in the same process.

Every function returns one row: ``figure, unit, ours, reference, reference_name, ratio`` (ours /
reference, higher is better) and ``target`` (the ratio or rate the issue asks for, if any).
Per-core figures hold torch and the BLAS/FFT libraries to one thread. Rates are counted
against this process's CPU time (``time.process_time``) as well as wall time: on a shared
machine the wall clock counts other tenants' work, CPU time counts only ours.
"""

from __future__ import annotations

import contextlib
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch


@contextlib.contextmanager
def one_core() -> Iterator[None]:
    """Hold torch, OpenMP and the BLAS libraries to one thread."""
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(threads)


def _best(run: Callable[[], object], repeats: int) -> tuple[float, float]:
    """The fastest of ``repeats`` runs: (wall seconds, CPU seconds)."""
    wall, cpu = float("inf"), float("inf")
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        run()
        wall, cpu = min(wall, time.perf_counter() - w), min(cpu, time.process_time() - c)
    return wall, cpu


def _best_interleaved(ours: Callable[[], object], ref: Callable[[], object],
                      repeats: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """:func:`_best` of each side with their runs alternating, so a change in the machine's
    load while measuring (another tenant, the CPU's clock) falls on both sides alike."""
    mine, theirs = (float("inf"),) * 2, (float("inf"),) * 2
    for _ in range(repeats):
        mine = tuple(map(min, mine, _best(ours, 1)))
        theirs = tuple(map(min, theirs, _best(ref, 1)))
    return mine, theirs


def _row(figure: str, unit: str, amount: float, ours: tuple[float, float], ref: tuple[float, float],
         reference_name: str, target: float | None, **extra) -> dict:
    rate, ref_rate = amount / ours[1], amount / ref[1]
    return {"figure": figure, "unit": unit, "ours": rate, "reference": ref_rate, "reference_name": reference_name,
            "ratio": rate / ref_rate, "ours_wall": amount / ours[0], "reference_wall": amount / ref[0],
            "target_ratio": target, **extra}


def librosa_log_mel(waveform: np.ndarray, preset: str = "vggish") -> np.ndarray:
    """The reference: librosa's STFT with our window and mel matrix, ``log(mel + offset)``.

    librosa centres a 400-sample window in each 512-sample FFT frame; 56 zeros at each end put
    its frame ``k`` on our samples ``[160 k, 160 k + 400)``, so the output is the same.
    """
    import librosa

    from mmvideos.features import logmel

    settings = logmel.PRESETS[preset]
    pad = [(0, 0)] * (waveform.ndim - 1)
    if settings.pad:
        waveform = np.pad(waveform, pad + [(settings.pad, settings.pad)], mode="reflect")
    window = logmel._window(settings.window, torch.device("cpu")).numpy()  # noqa: SLF001 (the same window)
    spectrum = np.abs(librosa.stft(np.pad(waveform, pad + [(56, 56)]), n_fft=logmel.N_FFT, hop_length=logmel.HOP,
                                   win_length=logmel.WINDOW, window=window, center=False))  # [..., 257, T]
    mel = np.swapaxes(spectrum, -1, -2) @ logmel.mel_matrix().astype(np.float32)
    return np.log(mel + settings.log_offset)


def log_mel_figures(repeats: int = 7) -> list[dict]:
    """log-mel per core against librosa: one 60-s clip and a batch of 64 clips of 5 s."""
    from mmvideos.features.logmel import log_mel

    rng = np.random.default_rng(0)
    shapes = {"one 60-s clip": rng.standard_normal(60 * 16000, dtype=np.float32) * 0.1,
              "64 clips x 5 s": rng.standard_normal((64, 5 * 16000), dtype=np.float32) * 0.1}
    rows = []
    with one_core():
        for name, wave in shapes.items():
            difference = float(np.abs(log_mel(wave, 16000, "vggish").numpy() - librosa_log_mel(wave)).max())
            ours = _best(lambda: log_mel(wave, 16000, "vggish"), repeats)
            ref = _best(lambda: librosa_log_mel(wave), repeats)
            rows.append(_row(f"log-mel, {name}, per core", "audio-s/s", wave.size / 16000, ours, ref,
                             "librosa STFT, same window and mel matrix", 1.5, max_abs_difference=difference))
    return rows


def bench_shards(folder: Path, clips: int, shards: int, seed: int = 0):
    """Feature shards of random log-mel (3-5 s clips, 10 visual labels of 1,000 and one audio
    label each) for the loader figure; returns ``(uris, counts, meta)``."""
    from mmvideos.data.shards import ShardWriter
    from mmvideos.features.store import ClipMeta, encode_mel

    rng = np.random.default_rng(seed)
    pool = rng.standard_normal((64, 5, 100, 64), dtype=np.float32).astype(np.float16)  # contents do not matter
    uris = [str(folder / f"shard-{i:04d}.tar") for i in range(shards)]
    meta, counts = {}, [0] * shards
    writers = [ShardWriter(uri) for uri in uris]
    for i in range(clips):
        clip_id = f"{i:08d}-000"
        mel = pool[i % len(pool), :int(rng.integers(3, 6))]
        writers[i % shards].write(clip_id, encode_mel(mel))
        meta[clip_id] = ClipMeta(np.sort(rng.choice(1000, 10, replace=False)), np.array([1000 + i % 50]), "train", i)
        counts[i % shards] += 1
    for writer in writers:
        writer.close()
    return uris, counts, meta


def _reference_loader(uris: list[str], meta: dict, seed: int, epoch: int) -> int:
    """The loader before counter-based draws: ``tarfile`` streams every clip, ``np.load`` decodes
    it whole, a NumPy generator per clip draws its second and labels."""
    from mmvideos.features.store import iter_records

    n = 0
    for clip in iter_records(uris, meta, "train"):
        rng = np.random.default_rng([seed, epoch, zlib.crc32(clip.clip_id.encode())])
        mel = clip.mel[int(rng.integers(len(clip.mel)))].copy()
        keep = rng.choice(clip.visual, size=(len(clip.visual) + 1) // 2, replace=False)
        np.union1d(keep, clip.audio)
        n += mel.shape[0] > 0
    return n


def loader_figure(folder: Path, clips: int = 4000, shards: int = 16, batch: int = 256) -> dict:
    """Training samples/s of one loader worker (shards in the page cache), batches collated,
    against the previous reader; plus the bytes each sample reads."""
    from torch.utils.data import DataLoader

    from mmvideos.training.data import TrainStream, collate

    uris, counts, meta = bench_shards(folder, clips, shards)
    stream = TrainStream(uris, counts, meta, seed=0, shuffle_buffer=1024)
    loader = DataLoader(stream, batch_size=batch, collate_fn=collate, num_workers=0)
    epoch = iter(range(100))

    def ours() -> None:
        stream.set_epoch(next(epoch))
        for _ in loader:
            pass

    with one_core():
        ours()  # page cache
        mine = _best(ours, 3)
        ref = _best(lambda: _reference_loader(uris, meta, 0, 0), 2)
    shard_bytes = sum(Path(u).stat().st_size for u in uris)
    row = _row("training loader, one worker", "samples/s", clips, mine, ref,
               "tarfile + np.load of whole clips, a generator per clip", None)
    row |= {"target_rate": 10000, "bytes_per_sample": 100 * 64 * 2 + 640,
            "reference_bytes_per_sample": shard_bytes / clips}
    return row


def _aac_file(path: Path, seconds: int) -> Path:
    """A stereo 44.1 kHz AAC file (an M4A) of ``seconds`` of tones and noise, like a video's sound."""
    import av

    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=44100, layout="stereo")
        for start in range(0, seconds * 44100, 44100):
            t = (start + np.arange(44100)) / 44100
            tone = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(44100)
            frame = av.AudioFrame.from_ndarray(np.stack([tone, tone[::-1]]).astype(np.float32), format="fltp",
                                               layout="stereo")
            frame.sample_rate = 44100
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def _ffmpeg_floor(path: Path, repeats: int) -> tuple[float, float]:
    """FFmpeg's own work with no per-frame Python, ``(wall, CPU)`` seconds: decoding every frame
    (nothing read from it) plus one swresample call over all of it (stereo float -> mono 16 kHz
    int16), what ``ffmpeg -ac 1 -ar 16000 -f s16le`` does in C."""
    import av

    def decode() -> None:
        with av.open(str(path)) as container:
            for _ in container.decode(container.streams.audio[0]):
                pass

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        samples = np.concatenate([f.to_ndarray() for f in container.decode(stream)], axis=1)
        layout, rate = stream.layout.name, stream.rate

    def resample() -> None:
        whole = av.AudioFrame.from_ndarray(samples, format="fltp", layout=layout)
        whole.sample_rate = rate
        resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
        resampler.resample(whole)
        resampler.resample(None)

    decoding, resampling = _best(decode, repeats), _best(resample, repeats)
    return decoding[0] + resampling[0], decoding[1] + resampling[1]


def decode_figures(folder: Path, seconds: int = 300, repeats: int = 2, demo: bool = True) -> list[dict]:
    """Audio decode + resample to 16 kHz mono (:func:`mmvideos.data.media.iter_audio`) against FFmpeg's
    decode and one resample call (:func:`_ffmpeg_floor`): on a generated stereo AAC file of
    ``seconds``, and with ``demo`` on the demo corpus's ``bbb.mp4`` (10 min, 44.1 kHz stereo
    AAC inside a 720p video) when it is in the cache (nothing is fetched)."""
    from mmvideos.data.files import cache_dir
    from mmvideos.data.media import iter_audio

    files = {f"{seconds // 60}-min AAC": _aac_file(folder / "long.m4a", seconds)}
    bbb = cache_dir() / "demo-videos" / "bbb.mp4"
    if demo and bbb.is_file():
        files["the demo's bbb.mp4"] = bbb
    rows = []
    for name, path in files.items():
        length = sum(len(x) for x in iter_audio(path, 16000)) / 16000  # also brings the file into the page cache
        ours = _best(lambda: sum(len(x) for x in iter_audio(path, 16000)), repeats)
        ref = _ffmpeg_floor(path, repeats)
        rows.append(_row(f"audio decode + resample, {name}", "audio-s/s", length, ours, ref,
                         "FFmpeg: decode alone + one swresample call", 1 / 1.3))
    return rows


def _scale_then_crop(frame, size: int) -> np.ndarray:
    """The previous frame path: the whole frame scaled (shorter side to ``size``) and converted
    to RGB, then centre-cropped in NumPy."""
    import math

    scale = size / min(frame.width, frame.height)
    sw, sh = max(size, math.ceil(frame.width * scale)), max(size, math.ceil(frame.height * scale))
    rgb = frame.reformat(width=sw, height=sh, format="rgb24").to_ndarray()
    top, left = (sh - size) // 2, (sw - size) // 2
    return rgb[top:top + size, left:left + size]


def frames_figure(folder: Path, count: int = 48, size: int = 224, width: int = 1280, height: int = 720,
                  repeats: int = 3) -> dict:
    """Sampled video frames -> ``size x size`` RGB per frame (:class:`mmvideos.data.media.SquareScaler`:
    crop, scale and convert in one filter graph) against scaling the whole frame then cropping,
    on ``count`` frames decoded from a 720p MPEG-4 video (decoding itself is not timed)."""
    import av

    from mmvideos.data.media import SquareScaler
    from mmvideos.demo.synth_media import write_media

    path = write_media(folder / "frames.mp4", count / 25, fps=25, size=(width, height))

    def timed(convert: Callable) -> tuple[float, float]:
        best = (float("inf"), float("inf"))
        for _ in range(repeats):  # frames decoded afresh each time: PyAV caches a scaler per frame object
            with av.open(str(path)) as container:
                frames = list(container.decode(container.streams.video[0]))
            if len(frames) != count:
                raise RuntimeError(f"decoded {len(frames)} frames of {count}")
            best = tuple(map(min, best, _best(lambda: [convert(f) for f in frames], 1)))
        return best

    square = SquareScaler(size)
    with one_core():
        ours, ref = timed(square), timed(lambda f: _scale_then_crop(f, size))
    return _row(f"frames {width}x{height} -> {size}x{size} RGB, per core", "frames/s", count, ours, ref,
                "the whole frame scaled to RGB, then cropped in NumPy", None)


def visual_annotator_figure(frames: int = 32, repeats: int = 3) -> dict:
    """The visual annotator's ``predict`` (uint8 frames -> probabilities, onnxruntime on one core)
    against plain onnxruntime running the same graph on input already normalised, the two
    alternating (a run takes about half a second: measured one side after the other, a change of
    load between them moved this ratio by 15%)."""
    import onnxruntime

    from mmvideos.annotators import load_annotator
    from mmvideos.bench.annotators import _photo_frames
    from mmvideos.data.files import cache_dir
    from mmvideos.stages.annotate import VisualConfig

    batch = _photo_frames(frames)
    with one_core():
        annotator = load_annotator("visual", VisualConfig(device="cpu", runtime="onnx"))
        graph = next((cache_dir() / "onnx").glob(f"{annotator.name}-{annotator.weights_sha256[:16]}-*.onnx"))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        session = onnxruntime.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        x = np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)
        annotator.predict(batch[:2])
        session.run(None, {"images": x[:2]})
        ours, ref = _best_interleaved(lambda: annotator.predict(batch), lambda: session.run(None, {"images": x}),
                                      repeats)
    return _row(f"visual annotation ({annotator.name}), per core", "frames/s", frames, ours, ref,
                "plain onnxruntime on the same graph", 1.0)
