"""Unit keys follow the code: an edited line recomputes the units that code computes, and no other.

The annotate and features stages run in a child Python whose ``mmvideos`` is a copy of this
package's source (``PYTHONPATH`` comes before the installed package), first as it is, then with
one line edited, over one data root; each run's summaries say which units it computed and reused.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from skimage import data
from test_annotators import _frames, write_clip_folder

from mmvideos.closure import SRC, closure_modules, code_digest
from mmvideos.data.dataroot import UNIT_CODE, unit_code

CHILD = r"""
import json, sys
from pathlib import Path

import mmvideos
from mmvideos.data import dataroot
from mmvideos.data.dataroot import DataRoot
from mmvideos.stages.annotate import (AudioConfig, MergeConfig, VisualConfig, annotate_audio, annotate_visual,
                                      merge_labels)
from mmvideos.stages.features import FeatureConfig, extract_features

clips, out = Path(sys.argv[1]), Path(sys.argv[2])
root = DataRoot(clips / "data")
runs = {"visual": annotate_visual(clips, out / "visual", VisualConfig(batch_size=8), root, progress=False),
        "audio": annotate_audio(clips, out / "audio", AudioConfig(), root, progress=False)}
merge_labels(clips, out / "visual", out / "audio", out / "labels", MergeConfig(), progress=False)
runs["features"] = extract_features(clips, out / "labels", out / "features", root, FeatureConfig(device="cpu"),
                                    progress=False)
runs["feature_sha256"] = sorted(dataroot.read_manifest(out / "features")["sha256"])
runs["code"] = mmvideos.__file__
print(json.dumps(runs))
"""


def _copy_of_the_code(dest: Path, edits: dict[str, tuple[str, str]] | None = None) -> Path:
    """A copy of the package source under ``dest/mmvideos`` with ``{relative file: (line, new line)}``
    edited (each line must occur once)."""
    shutil.copytree(SRC, dest / "mmvideos", ignore=shutil.ignore_patterns("__pycache__"))
    for name, (old, new) in (edits or {}).items():
        path = dest / "mmvideos" / name
        text = path.read_text()
        assert text.count(old) == 1, f"{name}: the line to edit is not there once: {old!r}"
        path.write_text(text.replace(old, new))
    return dest


def _run(code: Path, clips: Path, out: Path, cache: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code), "MMVIDEOS_CACHE": str(cache)}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(clips), str(out)], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    runs = json.loads(proc.stdout.strip().splitlines()[-1])
    assert runs["code"].startswith(str(code)), runs["code"]  # the copy ran, not the installed package
    return runs


def _done(runs: dict, stage: str) -> tuple[int, int]:
    return runs[stage]["shards_computed"], runs[stage]["shards_reused"]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """Two clips (two units per stage) annotated and featurised once by the unedited code."""
    base = tmp_path_factory.mktemp("keys")
    rng = np.random.default_rng(0)
    t = np.arange(32000) / 16000
    clips = write_clip_folder(base / "clips", {
        "cat": (_frames(data.chelsea(), n=3), (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)),
        "coffee": (_frames(data.coffee(), n=3), (0.1 * rng.standard_normal(t.size)).astype(np.float32))})
    cache = base / "cache"
    runs = _run(_copy_of_the_code(base / "code"), clips, base / "out0", cache)
    assert {s: _done(runs, s) for s in ("visual", "audio", "features")} == {
        "visual": (2, 0), "audio": (2, 0), "features": (2, 0)}
    return base, clips, cache, runs


def test_an_edited_line_of_the_front_end_recomputes_every_feature_unit_and_no_visual_one(first_run):
    base, clips, cache, first = first_run
    code = _copy_of_the_code(base / "code-logmel", {
        "features/logmel.py": ("    out += settings.log_offset\n", "    out += 100 * settings.log_offset\n")})
    runs = _run(code, clips, base / "out-logmel", cache)
    assert _done(runs, "features") == (2, 0)
    assert set(runs["feature_sha256"]).isdisjoint(first["feature_sha256"])  # the new code's shards, not stale ones
    assert _done(runs, "visual") == (0, 2)
    # the audio tagger's input is the YAMNet log-mel of the same front end: its scores can change too
    assert _done(runs, "audio") == (2, 0)


def test_an_edited_line_of_the_visual_annotator_recomputes_visual_units_only(first_run):
    base, clips, cache, first = first_run
    code = _copy_of_the_code(base / "code-visual", {
        "annotators/visual.py": ("        return probs\n", "        return np.minimum(probs, 1.0)\n")})
    runs = _run(code, clips, base / "out-visual", cache)
    assert _done(runs, "visual") == (2, 0)
    assert _done(runs, "audio") == (0, 2) and _done(runs, "features") == (0, 2)
    assert runs["feature_sha256"] == first["feature_sha256"]
    labels = pd.read_parquet(base / "out-visual" / "visual" / "visual.parquet")
    assert labels["labels"].map(len).tolist() == [10, 10]


def test_the_key_code_of_each_stage_is_its_own():
    visual, audio, features = (set(closure_modules(*UNIT_CODE[s])) for s in ("annotate_visual", "annotate_audio",
                                                                               "features"))
    assert "mmvideos.features.logmel" not in visual and "mmvideos.annotators.audio" not in visual
    assert "mmvideos.annotators.visual" not in audio and "mmvideos.features.logmel" in audio
    assert not {m for m in features if m.startswith("mmvideos.annotators")}
    assert len({unit_code(s) for s in UNIT_CODE}) == len(UNIT_CODE)
    assert code_digest(("mmvideos.features.presets",)) != code_digest(("mmvideos.features.logmel",))
