"""The report tells a real difference from noise, and names a benchmark as what it is."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch

from mmvideos.benchmarks import Benchmark, Split, read_benchmark
from mmvideos.benchmarks.naming import benchmark_name
from mmvideos.demo.benchmark import build_demo_benchmark, is_demo_benchmark
from mmvideos.stages.report import report
from mmvideos.stages.transfer import TransferConfig, score_rows


def _generated(clips: int = 150, classes: int = 3, folds: int = 5) -> Benchmark:
    rng = np.random.default_rng(0)
    labels = rng.permutation(np.arange(clips) % classes)
    table = pd.DataFrame({"clip_id": [f"c{i}" for i in range(clips)], "uri": "", "labels": [[int(c)] for c in labels],
                          "fold": [str(i % folds + 1) for i in range(clips)]})
    names = [str(f) for f in range(1, folds + 1)]
    protocol = tuple(Split(f"fold{f}", tuple(x for x in names if x != f), (f,)) for f in names)
    return Benchmark("esc50", table, tuple(f"class{c}" for c in range(classes)), protocol, False, 5)


def test_the_report_marks_an_informative_representation_apart_and_two_noises_within_noise(tmp_path):
    bench = _generated()
    rng = np.random.default_rng(1)
    classes = np.array([c[0] for c in bench.table["labels"]])
    informative = (np.eye(3)[classes] * 2 + rng.normal(size=(150, 3))).astype(np.float32)
    noise = {name: [rng.normal(size=(150, 8)).astype(np.float32)] for name in ("noise_a", "noise_b")}
    runs = [("pretrained", "informative", False), ("random_init", "noise_a", False), ("logmel_stats", "noise_b", False)]
    cfg = TransferConfig(bootstrap=500)
    rows, bootstrap, _ = score_rows(bench, {"informative": [informative], **noise}, runs, cfg, cfg.fit_config("esc50"),
                                    torch.device("cpu"))
    assert bootstrap["unit"] == "clip" and bootstrap["strata"].startswith("split and class")
    for row in rows:
        assert row["n"] == {"clips": 150, "classes": 3, "splits": 5, "seeds": 1}
        low, high = row["ci"]["top1"]
        assert low <= row["top1"] <= high and row["fold_sd"]["top1"] > 0
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "metrics.json").write_text(json.dumps(
        {"benchmark": "esc50", "arch": "vggish_fc", "name": "generated", "title": "generated (3 classes, 150 clips)",
         "paper": False, "bootstrap": bootstrap, "rows": rows}))
    report([tmp_path / "t"], tmp_path / "report")
    text = (tmp_path / "report" / "results.md").read_text()
    lines = {line.split(" = ")[0]: line for line in text.splitlines() if line.startswith("- generated Top-1:")}
    assert lines["- generated Top-1: vggish_fc pretrained minus vggish_fc random init"].endswith(
        "a difference beyond noise.")
    assert lines["- generated Top-1: vggish_fc random init minus log-mel stats"].endswith("within noise.")
    header = next(line for line in text.splitlines() if line.startswith("| Model |"))
    assert header.startswith("| Model | generated Top-1 | generated Top-5 |")
    assert "(paper)" not in text.replace("no (paper) column", "")  # none beside a benchmark that is not the paper's


def test_the_demo_is_named_as_what_it_is(tmp_path):
    root = build_demo_benchmark(tmp_path / "demo")  # the FoxDot sdist from the cache
    bench = read_benchmark("esc50", root)
    named = benchmark_name("esc50", str(root), len(bench.classes), len(bench.table), demo=is_demo_benchmark(root))
    assert named.title == "demo percussion (8 classes, 52 clips)" and not named.real
    own = benchmark_name("esc50", "/data/my-sounds/", 10, 100)
    assert (own.title, own.real) == ("my-sounds (10 classes, 100 clips)", False)
    assert benchmark_name("esc50", "gs://b/ESC-50-master", 50, 2000).title == "ESC-50 (50 classes, 2,000 clips)"
    assert benchmark_name("esc50", "gs://b/ESC-50-master", 50, 2000).real
    assert not benchmark_name("esc50", "/x/esc", 50, 1000).real  # 50 classes but half the clips: not ESC-50
    assert benchmark_name("audioset", "/x/as", 527, 35000, listed=42531).real  # missing clips still list
    assert not is_demo_benchmark(tmp_path)
