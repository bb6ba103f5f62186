"""Frames as the annotators see them: the centred square of each frame, scaled to size x size."""

from __future__ import annotations

import av
import numpy as np
import pytest

from mmvideos.media import SquareScaler, iter_frames

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
