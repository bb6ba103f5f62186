"""Decoding: audio as one resample of the whole stream; frames as the centred square, scaled."""

from __future__ import annotations

import av
import numpy as np
import pytest

from mmvideos.data.media import SquareScaler, iter_audio, iter_frames

RED, BLUE, WHITE, BLACK = (255, 0, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)


def _layout(width: int, height: int) -> np.ndarray:
    """Red/blue bands outside the centred square; inside it a 2x2 checkerboard (white top-left)."""
    image = np.zeros((height, width, 3), np.uint8)
    side = min(width, height)
    top, left = (height - side) // 2, (width - side) // 2
    image[:] = RED
    image[top + side:] = image[:, left + side:] = BLUE
    square = image[top:top + side, left:left + side]
    square[:] = BLACK
    half = side // 2
    square[:half, :half] = square[half:, half:] = WHITE
    return image


def _assert_square(rgb: np.ndarray, size: int) -> None:
    """The checkerboard fills the output edge to edge; no band colour is left anywhere."""
    assert rgb.shape == (size, size, 3) and rgb.dtype == np.uint8
    q, m = size // 2, 3  # quadrant side, margin left for the bilinear edge
    quadrants = {(0, 0): WHITE, (0, 1): BLACK, (1, 0): BLACK, (1, 1): WHITE}
    for (row, col), colour in quadrants.items():
        block = rgb[row * q + m:(row + 1) * q - m, col * q + m:(col + 1) * q - m].astype(int)
        assert np.abs(block - colour).max() <= 12, (row, col)
    chroma = rgb.astype(int).max(axis=2) - rgb.astype(int).min(axis=2)
    assert chroma.max() <= 24  # grey levels only: the red and blue bands were cut away


def test_iter_frames_cut_the_centred_square_and_scale_it(tmp_path):
    path = tmp_path / "bands.mkv"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv444p"
        for _ in range(10):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(_layout(320, 240), format="rgb24")))
        out.mux(stream.encode(None))
    frames = list(iter_frames(path, [0.0, 0.5, 5.0], 64))
    assert [t for t, _ in frames] == [0.0, 0.5, 5.0]  # 5.0 is past the end: the last frame
    for _, rgb in frames:
        _assert_square(rgb, 64)


@pytest.mark.parametrize("width,height,size", [(240, 320, 64), (400, 100, 224), (640, 360, 224)])
def test_square_scaler_follows_each_frame_size(width, height, size):
    square = SquareScaler(size)
    _assert_square(square(av.VideoFrame.from_ndarray(_layout(width, height), format="rgb24")), size)
    # the same scaler on a frame of another size (a stream that changes resolution part-way)
    _assert_square(square(av.VideoFrame.from_ndarray(_layout(height, width), format="rgb24")), size)


def _stereo_aac(path, seconds: float, rate: int = 44100):
    """An M4A of stereo AAC: a tone on the left, noise on the right."""
    rng = np.random.default_rng(0)
    n = int(seconds * rate)
    left = 0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / rate)
    samples = np.stack([left, 0.1 * rng.standard_normal(n)]).astype(np.float32)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=rate, layout="stereo")
        for start in range(0, n, 4096):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, start:start + 4096]), format="fltp",
                                               layout="stereo")
            frame.sample_rate = rate
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


@pytest.mark.parametrize("chunk_s", [1.0, 0.37, 10.0])
def test_iter_audio_is_one_resample_of_the_whole_decoded_stream(tmp_path, chunk_s):
    """Streamed in chunks, the samples are those of one resampler call over every decoded frame."""
    path = _stereo_aac(tmp_path / "long.m4a", 7.3)
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        whole = np.concatenate([f.to_ndarray() for f in container.decode(stream)], axis=1)
        frame = av.AudioFrame.from_ndarray(whole, format=stream.format.name, layout=stream.layout.name)
        frame.sample_rate = stream.rate
    resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
    expected = np.concatenate([f.to_ndarray().reshape(-1) for f in resampler.resample(frame) + resampler.resample(None)])
    chunks = list(iter_audio(path, 16000, chunk_s=chunk_s))
    want = round(chunk_s * 16000)
    assert all(c.dtype == np.int16 and c.size == want for c in chunks[:-1]) and 0 < chunks[-1].size <= want
    got = np.concatenate(chunks)
    assert got.size == expected.size and abs(got.size - 7.3 * 16000) < 0.1 * 16000
    np.testing.assert_array_equal(got, expected)
    assert np.abs(got).max() > 3000  # sound, not silence


def _mkv(path, video_s: float, audio_s: float):
    """A Matroska file (no per-stream durations) of ``video_s`` s of video and ``audio_s`` s of audio."""
    import fractions

    from mmvideos.demo.synth_media import colour_bars, tone

    with av.open(str(path), "w") as out:
        video = out.add_stream("mpeg4", rate=25)
        video.width, video.height, video.pix_fmt = 96, 64, "yuv420p"
        audio = out.add_stream("aac", rate=16000)
        audio.layout = "mono"
        for i in range(int(video_s * 25)):
            out.mux(video.encode(av.VideoFrame.from_ndarray(colour_bars(i / 25, 96, 64), format="rgb24")))
        out.mux(video.encode(None))
        samples = tone(audio_s, rate=16000)
        for start in range(0, samples.size, 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[None, start:start + 1024]), format="flt",
                                               layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 16000, start, fractions.Fraction(1, 16000)
            out.mux(audio.encode(frame))
        out.mux(audio.encode(None))
    return path


@pytest.mark.parametrize("video_s, audio_s", [(1.0, 40.0), (40.0, 8.0), (12.0, 12.0)])
def test_streams_without_declared_durations_are_measured(tmp_path, video_s, audio_s):
    """Matroska declares no per-stream duration: the span both streams cover is measured from
    their last packets. Before: 1 s of video with 40 s of audio was kept as 40 s (clips of a
    frozen frame), and 40 s of video with 8 s of audio was rejected."""
    from mmvideos.data.media import probe

    path = _mkv(tmp_path / "a.mkv", video_s, audio_s)
    with av.open(str(path)) as container:
        assert container.streams.video[0].duration is None
    assert probe(path).duration_s == pytest.approx(min(video_s, audio_s), abs=0.1)
