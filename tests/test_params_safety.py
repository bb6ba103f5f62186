"""Params cannot hang the program: a bounded YAML loader, errors that never repr a whole
structure, and the front end checked against the audio annotator."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mmvideos.settings import MAX_PARAMS_BYTES, load_params

REPO_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def _params_with(tmp_path, extra: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(REPO_PARAMS.read_text() + "\n" + extra)
    return path


#: Nine nested aliases standing for 10^9 strings, in a section of their own.
BOMB = "anchors:\n  a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9))


def test_an_alias_bomb_is_refused_at_once(tmp_path):
    """Before: 10^9 values behind nine aliases passed validation and hung `compile`; a wrong
    type built a 1 GB repr for its message."""
    path = tmp_path / "params.yaml"
    text = REPO_PARAMS.read_text().replace("  baselines: {}", "  baselines:\n    huge:\n      weights: *a8")
    path.write_text(BOMB + text)
    started = time.monotonic()
    with pytest.raises(ValueError, match="aliases expand to more than 100000 values"):
        load_params(path)
    assert time.monotonic() - started < 5


def test_a_wrong_type_message_stays_short(tmp_path):
    big = "[" + ", ".join(str(i) for i in range(20000)) + "]"
    path = tmp_path / "params.yaml"
    path.write_text(REPO_PARAMS.read_text().replace("  slots: 1", f"  slots: {big}", 1))
    with pytest.raises(ValueError) as caught:
        load_params(path)
    assert "data.slots" in str(caught.value) and len(str(caught.value)) < 600


def test_a_huge_file_is_refused_before_it_is_parsed(tmp_path):
    path = _params_with(tmp_path, "# " + "x" * MAX_PARAMS_BYTES + "\n")
    started = time.monotonic()
    with pytest.raises(ValueError, match="bytes, more than the .* a parameter file may hold"):
        load_params(path)
    assert time.monotonic() - started < 1


def test_the_repositorys_aliases_still_load():
    params = load_params(REPO_PARAMS)
    assert params["pretrain"] == params["pretrain_demo"]  # pretrain: *demo
    assert set(params["pretrain_paper"]) <= set(params["pretrain_demo"])  # <<: *paper


def test_a_front_end_that_does_not_fit_yamnet_is_refused(tmp_path):
    """Before: features: paper with YAMNet passed and failed in onnxruntime (100 vs 96 frames)."""
    text = REPO_PARAMS.read_text()
    assert "annotate_audio:" in text
    path = tmp_path / "params.yaml"
    path.write_text(text.replace("annotate_audio:", "annotate_audio:\n  features: paper", 1))
    with pytest.raises(ValueError, match="annotate_audio.features: 'paper' does not fit annotate_audio.model yamnet"):
        load_params(path)
