"""``mmvideos bench``: each figure next to its reference, written as JSON and Markdown."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mmvideos.bench.demo import markdown_lines, task_times
from mmvideos.bench.figures import librosa_log_mel
from mmvideos.bench.run import run_all
from mmvideos.features.logmel import log_mel


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
    assert "demo" not in report  # the whole pipeline is no smoke run


#: Lines of a kfp.local run log as `mmvideos run` writes it: colour codes, the tasks' own output
#: between, and a ParallelFor's iterations (probe, transfer) running at once in threads.
RUN_LOG = """\
02:00:55.656 - INFO - Executing task \x1b[96m'list-source'\x1b[0m
02:00:55.657 - INFO - Streamed logs:
    [KFP Executor 2026-12-02 02:00:55,798 INFO]: Looking for component `list_source`
02:00:57.206 - INFO - Task \x1b[96m'list-source'\x1b[0m finished with status \x1b[92mSUCCESS\x1b[0m
02:00:57.213 - INFO - Executing task \x1b[96m'probe'\x1b[0m
02:00:57.220 - INFO - Executing task \x1b[96m'probe'\x1b[0m
02:00:59.215 - INFO - Task \x1b[96m'probe'\x1b[0m finished with status \x1b[92mSUCCESS\x1b[0m
02:00:59.296 - INFO - Task \x1b[96m'probe'\x1b[0m finished with status \x1b[92mSUCCESS\x1b[0m
02:01:57.194 - INFO - Executing task \x1b[96m'transfer'\x1b[0m
02:01:57.493 - INFO - Executing task \x1b[96m'transfer'\x1b[0m
02:04:22.855 - INFO - Task \x1b[96m'transfer'\x1b[0m finished with status \x1b[92mSUCCESS\x1b[0m
02:04:22.863 - INFO - Executing task \x1b[96m'collect'\x1b[0m
02:04:30.138 - INFO - Task \x1b[96m'collect'\x1b[0m finished with status \x1b[92mSUCCESS\x1b[0m
02:04:39.103 - INFO - Task \x1b[96m'transfer'\x1b[0m finished with status \x1b[92mSUCCESS\x1b[0m
02:04:48.516 - INFO - Pipeline \x1b[95m'mmvideos'\x1b[0m finished with status \x1b[92mSUCCESS\x1b[0m
"""


def test_the_run_log_gives_each_task_its_runs_seconds_and_share_of_the_wall_clock():
    timed = task_times(RUN_LOG)
    tasks = timed["tasks"]
    assert {name: row["count"] for name, row in tasks.items()} == {"list-source": 1, "probe": 2, "transfer": 2,
                                                                   "collect": 1}
    assert tasks["list-source"] == {"count": 1, "unlogged": 0, "seconds": 1.55, "wall_s": 1.55}
    assert tasks["probe"]["seconds"] == pytest.approx(2.002 + 2.076)  # the two runs, however paired
    assert tasks["probe"]["wall_s"] == pytest.approx(2.083)  # 7 ms alone, 1,995 ms side by side, 81 ms alone
    assert tasks["collect"]["wall_s"] == pytest.approx(7.275 / 2, abs=1e-3)  # beside the second transfer all along
    assert tasks["transfer"]["wall_s"] == pytest.approx(0.299 + 145.362 + 0.008 + 7.275 / 2 + 8.965, abs=1e-3)
    assert timed["first_start"] == 2 * 3600 + 55.656 and timed["last_end"] == 2 * 3600 + 4 * 60 + 39.103
    assert timed["busy_s"] == pytest.approx(sum(row["wall_s"] for row in tasks.values()), abs=0.005)
    span = timed["last_end"] - timed["first_start"]
    assert span - timed["busy_s"] == pytest.approx(0.007 + 57.898, abs=1e-3)  # when no task ran


def test_a_run_past_midnight_and_a_broken_log():
    timed = task_times("23:59:59.500 - INFO - Executing task 'a'\n"
                       "00:00:01.000 - INFO - Task 'a' finished with status SUCCESS\n")
    assert timed["tasks"]["a"]["seconds"] == pytest.approx(1.5)
    with pytest.raises(ValueError, match="never finished"):
        task_times("00:00:01.000 - INFO - Executing task 'a'\n")
    with pytest.raises(ValueError, match="no task"):
        task_times("nothing ran\n")


def test_a_finish_kfp_did_not_log_closes_with_its_siblings():
    """Two iterations of a ParallelFor started, kfp logged one finish (seen in a real run): the
    other closes at that finish, is counted as unlogged, and the next task is timed as usual."""
    timed = task_times("00:00:00.000 - INFO - Executing task 'a'\n"
                       "00:00:00.010 - INFO - Executing task 'a'\n"
                       "00:00:10.000 - INFO - Task 'a' finished with status SUCCESS\n"
                       "00:00:10.100 - INFO - Executing task 'b'\n"
                       "00:00:11.100 - INFO - Task 'b' finished with status SUCCESS\n")
    a, b = timed["tasks"]["a"], timed["tasks"]["b"]
    assert (a["count"], a["unlogged"], b["count"], b["unlogged"]) == (2, 1, 1, 0)
    assert a["seconds"] == pytest.approx(19.99) and a["wall_s"] == pytest.approx(10.0)
    assert b["wall_s"] == pytest.approx(1.0)


def test_the_demo_markdown_shows_the_total_against_the_target_and_tasks_by_seconds():
    demo = {"command": "mmvideos run", "target_s": 90, "total_s": 180.0, "cpu_s": 300.0, "startup_s": 4.0,
            "tasks_s": 170.0, "between_s": 1.0, "summary_s": 6.0, "tasks": task_times(RUN_LOG)["tasks"]}
    text = "\n".join(markdown_lines(demo))
    assert "180.0 s, target 90 s (2.00x the target)" in text and "Start-up before the first task 4.0 s" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| task")]
    assert [row.split(" | ")[0] for row in rows] == ["| transfer", "| collect", "| probe", "| list-source"]
    assert "| transfer | 2 | 158.3 | 88% | 307.3 |" in rows


def test_bench_runs_only_the_figures_asked_for(tmp_path):
    report = run_all(output=tmp_path, quick=True, figures=["frames"])
    [row] = report["figures"]
    assert row["figure"].startswith("frames 1280x720 -> 224x224") and row["ours"] > 0 and row["reference"] > 0
    assert "training" not in report and "loader_sizing" not in report and "demo" not in report
    with pytest.raises(ValueError, match="unknown figures"):
        run_all(output=tmp_path, figures=["frame"])


def test_the_gpu_benchmark_runs_end_to_end_on_the_cpu(tmp_path):
    from mmvideos.bench.gpu import main

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
    from mmvideos.bench.gpu import markdown_body
    from mmvideos.tooling import docs as docs_gen

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
