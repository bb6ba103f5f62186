"""Media decoding with PyAV (which bundles FFmpeg): probing, streamed audio, sampled frames.

Nothing here loads a whole file: audio comes out in resampled chunks and frames one at a time,
so memory stays flat however long the video is.
"""

from __future__ import annotations

import dataclasses
import errno
import fractions
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import av
import av.filter
import numpy as np


class MediaError(Exception):
    """Content that FFmpeg refuses (not a container it knows, a stream it cannot decode); the
    message says why in plain words. Only this is a reject: reading it again gives the same."""


class MediaUnreadable(OSError):
    """The bytes could not be read now (an errno from the OS or the file object: EIO from NFS,
    a FUSE-mounted bucket or a flaky disk, a reset connection): nothing was learnt about the
    content, so it is never a reject; the item is left for the next run. Keeps the errno."""


def _failure(exc: BaseException, what: str) -> Exception:
    """The exception to raise for an error met while reading a media file: an OS-level error
    (any ``OSError``, FFmpeg's errno-carrying errors included) is :class:`MediaUnreadable`
    (``FileNotFoundError`` stays itself: the file is gone), anything else FFmpeg reports is
    :class:`MediaError` ``"<what> (<reason>)"``."""
    if isinstance(exc, FileNotFoundError):
        return FileNotFoundError(exc.errno, f"{what}: the file is gone ({_ffmpeg_reason(exc)})")
    if isinstance(exc, OSError):
        return MediaUnreadable(exc.errno, f"{what}: cannot be read now ({_ffmpeg_reason(exc)}); run again")
    return MediaError(f"{what} ({_ffmpeg_reason(exc)})")


_READ_ERRORS = (av.FFmpegError, OSError)


@dataclasses.dataclass(frozen=True)
class Probe:
    """What ingest needs to know about a media file."""

    duration_s: float
    has_video: bool
    has_audio: bool
    video_codec: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    audio_codec: str | None = None
    sample_rate: int | None = None
    channels: int | None = None


def _stream_seconds(stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return None


def probe(path: str | Path | BinaryIO) -> Probe:
    """Read the container header of ``path`` (a path or a binary file object; no decoding).

    An I/O error raises :class:`MediaUnreadable`, content FFmpeg refuses :class:`MediaError`.
    The duration is the span both streams cover when both are present (the shorter one), so a
    clip cut inside it always has sound and picture.
    """
    try:
        with _open(path) as container:
            videos = list(container.streams.video)
            # a still image attached to a sound file (cover art) is no video: every frame is the cover
            video = next((v for v in videos if not _is_cover(v)), None)
            if video is None and videos:
                raise MediaError("sound with a still cover image, not a video")
            audio = next(iter(container.streams.audio), None)
            declared = [_stream_seconds(s) for s in (video, audio) if s is not None]
            spans = [s for s in declared if s]
            whole = container.duration / av.time_base if container.duration is not None else max(spans, default=0.0)
            if video is not None and audio is not None and len(spans) < 2:
                # no per-stream durations (MKV, WebM...): measure each stream's end from its last packets
                ends = _measured_ends(container, [video, audio], whole)
                if max(ends) < whole - max(2.0, 0.02 * whole):
                    raise MediaError(f"its header declares {whole:.0f} s but its streams end near {max(ends):.1f} s")
                duration = min(ends)
            else:
                duration = min(spans) if spans else whole
                if audio is not None and duration > 0:
                    _check_declared_end(container, audio, duration)
            fps = float(video.average_rate) if video is not None and video.average_rate else None
            return Probe(
                duration_s=round(duration, 3),
                has_video=video is not None,
                has_audio=audio is not None,
                video_codec=video.codec_context.name if video is not None else None,
                width=video.codec_context.width if video is not None else None,
                height=video.codec_context.height if video is not None else None,
                fps=round(fps, 3) if fps else None,
                audio_codec=audio.codec_context.name if audio is not None else None,
                sample_rate=audio.codec_context.sample_rate if audio is not None else None,
                channels=audio.codec_context.channels if audio is not None else None,
            )
    except _READ_ERRORS as exc:
        raise _failure(exc, "not a readable media file") from exc


def _open(source: str | Path | BinaryIO):
    """An FFmpeg container over a path (FFmpeg reads it) or a binary file object (PyAV reads it
    through Python, and an ``OSError`` of its ``read`` comes out as itself)."""
    if isinstance(source, (str, Path)):
        return av.open(str(source), metadata_errors="ignore")
    return av.open(source, metadata_errors="ignore")


def _is_cover(stream) -> bool:
    return bool(stream.disposition & av.stream.Disposition.attached_pic)


#: Packets :func:`_measured_ends` may read looking for the streams' last packets (hours of audio).
MAX_MEASURE_PACKETS = 4_000_000


def _measured_ends(container, streams: list, whole: float) -> list[float]:
    """Each stream's end in seconds (from its start), from the timestamps of its last packets:
    for containers that declare no per-stream duration, whose ``whole`` duration is the longest
    stream's. Reads the packets (no decoding) from ``whole - 10 s``, then from 4x as far back
    while a stream has none there (one that stopped early), down to the start."""
    back = 10.0
    while True:
        start = max(0.0, whole - back)
        container.seek(int(start * av.time_base), backward=True)
        ends: dict[int, float] = {}
        for count, packet in enumerate(container.demux(*streams)):
            if count >= MAX_MEASURE_PACKETS:
                raise MediaError(f"the container declares no stream durations and its streams' ends were not found "
                                 f"in {MAX_MEASURE_PACKETS} packets")
            if packet.pts is None or packet.stream is None:
                continue
            stream = packet.stream
            end = float((packet.pts - (stream.start_time or 0) + (packet.duration or 0)) * stream.time_base)
            ends[stream.index] = max(ends.get(stream.index, 0.0), end)
        if len(ends) == len(streams) or start == 0.0:
            return [ends.get(s.index, 0.0) for s in streams]
        back *= 4


def _check_declared_end(container, audio, duration: float) -> None:
    """Refuse a header whose duration the audio does not reach: seek to just before the declared
    end and read a few packets (a header claiming 10^9 s must not plan 10^8 clips)."""
    base = audio.start_time or 0
    container.seek(max(0, int((duration - 3.0) / audio.time_base)) + base, stream=audio, backward=True)
    end = 0.0
    for count, packet in enumerate(container.demux(audio)):
        if packet.pts is not None:
            end = max(end, float((packet.pts - base + (packet.duration or 0)) * audio.time_base))
        if count >= 200 or end >= duration - 0.5:
            break
    if end < duration - max(2.0, 0.02 * duration):
        raise MediaError(f"its header declares {duration:.0f} s but its audio ends near {end:.1f} s")


def _ffmpeg_reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split(":")[0].strip() if text else type(exc).__name__


def iter_audio(path: str | Path | BinaryIO, sample_rate: int, chunk_s: float = 1.0) -> Iterator[np.ndarray]:
    """Decode the first audio stream as mono 16-bit PCM at ``sample_rate``, in chunks.

    Yields int16 arrays of about ``chunk_s`` seconds (the last one may be shorter). Errors as
    :func:`probe`'s.
    """
    want = max(1, int(round(chunk_s * sample_rate)))
    pending: list[np.ndarray] = []
    have = 0
    try:
        with _open(path) as container:
            if not container.streams.audio:
                raise MediaError("no audio stream")
            for samples in _resampled(container.decode(container.streams.audio[0]), sample_rate):
                pending.append(samples)
                have += samples.size
                while have >= want:
                    block = np.concatenate(pending)
                    yield block[:want]
                    pending, have = [block[want:]], block.size - want
    except _READ_ERRORS as exc:
        raise _failure(exc, "audio cannot be decoded") from exc
    if pending:
        tail = np.concatenate(pending)
        if tail.size:
            yield tail


def _resampled(frames: Iterator[av.AudioFrame], sample_rate: int, block_s: float = 1.0) -> Iterator[np.ndarray]:
    """Decoded frames -> mono int16 sample blocks of ``block_s`` at ``sample_rate`` (the last
    one shorter).

    Each decoded frame goes as it is into one FFmpeg filter graph (``abuffer -> aformat``, with
    the ``aresample`` FFmpeg inserts, ``-> abuffersink`` handing out ``block_s`` frames), which
    is what :class:`av.AudioResampler` builds, so the samples are the same bit for bit. Python
    touches a decoded frame only to push it: no copy, and the graph is asked for output once per
    ``block_s`` of input rather than after every ~20 ms frame. A stream may change its sample
    format, layout or rate part-way (a broadcast capture across an ad break); a graph is fixed
    to its first input, so each change flushes it and starts a new one.
    """
    graph, source, have = None, None, 0
    for frame in frames:
        shape = (frame.format.name, frame.layout.name, frame.sample_rate)
        if shape != source:
            if graph is not None:
                yield from _drain(graph, flush=True)
            graph, source, have = _resample_graph(frame, sample_rate, block_s), shape, 0
        graph.push(frame)
        have += frame.samples
        if have >= block_s * frame.sample_rate:
            yield from _drain(graph)
            have = 0
    if graph is not None:
        yield from _drain(graph, flush=True)


def _resample_graph(frame: av.AudioFrame, sample_rate: int, block_s: float) -> av.filter.Graph:
    graph = av.filter.Graph()
    source = graph.add("abuffer", sample_rate=str(frame.sample_rate), sample_fmt=frame.format.name,
                       channel_layout=frame.layout.name, time_base=str(frame.time_base or f"1/{frame.sample_rate}"))
    convert = graph.add("aformat", sample_rates=str(sample_rate), sample_fmts="s16", channel_layouts="mono")
    graph.link_nodes(source, convert, graph.add("abuffersink")).configure()
    graph.set_audio_frame_size(max(1, round(block_s * sample_rate)))
    return graph


def _drain(graph: av.filter.Graph, flush: bool = False) -> Iterator[np.ndarray]:
    """The graph's output so far (all of it, with ``flush``) as int16 arrays."""
    if flush:
        graph.push(None)
    while True:
        try:
            frame = graph.pull()
        except EOFError:
            return
        except av.FFmpegError as exc:
            if exc.errno != errno.EAGAIN:
                raise
            return
        yield frame.to_ndarray().reshape(-1)


def iter_frames(path: str | Path | BinaryIO, times: Sequence[float], size: int) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(time, frame)`` for each requested time (sorted ascending), in one decode pass.

    Each frame is the first decoded frame at or after the requested time (the last frame of the
    stream for times past its end), its centred square cut out and scaled to ``size x size`` RGB
    uint8 (:class:`SquareScaler`). Errors as :func:`probe`'s.
    """
    if not times:
        return
    targets = list(times)
    i = 0
    last = None
    square = SquareScaler(size)
    try:
        with _open(path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                t = frame.time if frame.time is not None else 0.0
                last = frame
                while i < len(targets) and t + 1e-6 >= targets[i]:
                    yield targets[i], square(frame)
                    i += 1
                if i == len(targets):
                    return
            if last is None:
                raise MediaError("video stream holds no decodable frame")
            final = square(last)
    except _READ_ERRORS as exc:
        raise _failure(exc, "video cannot be decoded") from exc
    for t in targets[i:]:
        yield t, final


class SquareScaler:
    """Decoded video frame -> its centred square scaled to ``size x size`` RGB uint8, in one
    FFmpeg filter graph (``crop -> scale (bilinear) -> rgb24``).

    The square's side is the frame's shorter side, centred (for 4:2:0 video its side and offsets
    are rounded down to even, as FFmpeg's ``crop`` does). Cropping before scaling converts only
    the pixels kept, and scale and colour conversion are one swscale call: about 3x faster than
    scaling the whole frame to RGB and cropping in NumPy. The graph is rebuilt when the stream
    changes its frame size or pixel format.
    """

    def __init__(self, size: int):
        self.size = size
        self._graph, self._shape = None, None

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        shape = (frame.width, frame.height, frame.format.name)
        if shape != self._shape:
            self._graph, self._shape = self._build(frame), shape
        self._graph.push(frame)
        return self._graph.pull().to_ndarray()

    def _build(self, frame: av.VideoFrame) -> av.filter.Graph:
        w, h = frame.width, frame.height
        side = min(w, h)
        graph = av.filter.Graph()
        source = graph.add_buffer(width=w, height=h, format=frame.format,
                                  time_base=frame.time_base or fractions.Fraction(1, 1000))
        graph.link_nodes(source,
                         graph.add("crop", f"{side}:{side}:{(w - side) // 2}:{(h - side) // 2}"),
                         graph.add("scale", f"{self.size}:{self.size}:flags=bilinear"),
                         graph.add("format", "rgb24"),
                         graph.add("buffersink")).configure()
        return graph
