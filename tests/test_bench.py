"""``mmvideos bench``: each figure next to its reference, written as JSON and Markdown."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mmvideos.bench import run_all
from mmvideos.bench_figures import librosa_log_mel
from mmvideos.features import log_mel


def test_our_log_mel_is_librosas_on_every_preset():
    wave = np.random.default_rng(1).standard_normal((2, 16000 + 37), dtype=np.float32) * 0.1
    for preset in ("vggish", "yamnet", "paper"):
        np.testing.assert_allclose(log_mel(wave, 16000, preset).numpy(), librosa_log_mel(wave, preset), atol=1e-4, rtol=0)


def test_bench_writes_each_figure_with_its_reference_ratio_machine_and_versions(tmp_path):
    report = run_all(models=["vggish_fc"], batch=4, width_mult=0.0625, output=tmp_path, quick=True)
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["machine"]["versions"]["librosa"] and saved["machine"]["cores"] >= 1
    figures = {row["figure"]: row for row in saved["figures"]}
    assert len(figures) == 6 == len(report["figures"])
    for row in figures.values():
        assert row["ours"] > 0 and row["reference"] > 0 and np.isclose(row["ratio"], row["ours"] / row["reference"])
    assert all(row["max_abs_difference"] < 1e-4 for name, row in figures.items() if name.startswith("log-mel"))
    assert saved["loader_sizing"]["workers"] >= 1
    markdown = (tmp_path / "bench.md").read_text()
    assert "| training loader, one worker |" in markdown and "librosa" in markdown
    assert (tmp_path / "bench.png").stat().st_size > 1000


def test_bench_runs_only_the_figures_asked_for(tmp_path):
    report = run_all(output=tmp_path, quick=True, figures=["frames"])
    [row] = report["figures"]
    assert row["figure"].startswith("frames 1280x720 -> 224x224") and row["ours"] > 0 and row["reference"] > 0
    assert "training" not in report and "loader_sizing" not in report
    with pytest.raises(ValueError, match="unknown figures"):
        run_all(output=tmp_path, figures=["frame"])


def test_the_gpu_benchmark_runs_end_to_end_on_the_cpu(tmp_path):
    from mmvideos.bench_gpu import main

    main(["--device", "cpu", "--quick", "--output", str(tmp_path)])
    report = json.loads((tmp_path / "bench_gpu.json").read_text())
    assert [row["model"] for row in report["models"]] == ["vggish", "vggish_bn", "vggish_fc", "resnet50", "mobilenetv2"]
    assert all(row["samples_per_s"] > 0 and row["forward_flops"] > 0 for row in report["models"])
    assert [row["workers"] for row in report["loader"]] == [0, 2] and report["loader"][0]["samples_per_s"] > 0
    assert report["fed"]["samples_per_s"] > 0
    assert report["annotators"]["visual"]["frames_per_s"] > 0 and report["annotators"]["audio"]["audio_seconds_per_s"] > 0
    markdown = (tmp_path / "bench_gpu.md").read_text()
    assert "| vggish_fc |" in markdown and "180 M frames in a day takes 2,083 frames/s" in markdown

    # docs/benchmarks.md's GPU block: a run on the CPU is not a GPU figure ...
    from mmvideos import docs_gen
    from mmvideos.bench_gpu import markdown_body

    assert "Not measured yet" in docs_gen.bench_gpu_block(tmp_path) and "'cpu'" in docs_gen.bench_gpu_block(tmp_path)
    assert "Not measured yet" in docs_gen.bench_gpu_block(tmp_path / "nowhere")
    # ... a run on CUDA is (this CPU report relabelled, to check the writing side without a GPU)
    gpu = tmp_path / "gpu"
    gpu.mkdir()
    (gpu / "bench_gpu.json").write_text(json.dumps({**report, "device": "cuda"}))
    repo = Path(__file__).resolve().parents[1]
    docs = shutil.copytree(repo / "docs", tmp_path / "docs")
    assert docs_gen.generate(repo / "results", docs, None, bench_gpu=gpu) == [docs / "benchmarks.md"]
    page = (docs / "benchmarks.md").read_text()
    assert markdown_body({**report, "device": "cuda"}) in page and "Not measured yet" not in page
    assert page.index("| vggish_fc |") > page.index("<!-- BEGIN GENERATED bench-gpu")
