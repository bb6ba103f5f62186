"""``mmvideos bench --determinism``: its own data roots, its refusals and its table (the runs themselves
take about 25 min on the demo: `make bench`, not the tests; their figures are in docs/benchmarks.md)."""

from __future__ import annotations


from mmvideos.bench.determinism import PAIRS, RUNS, linked_root, markdown, refusal


def test_each_run_gets_a_data_root_of_its_own_without_the_checkpoints(tmp_path):
    root = tmp_path / "root"
    (root / "features" / "ab").mkdir(parents=True)
    (root / "features" / "ab" / "unit.npy").write_bytes(b"features")
    (root / "pretrain" / "cd").mkdir(parents=True)
    (root / "pretrain" / "cd" / "checkpoint.pt").write_bytes(b"a finished training")
    own = linked_root(root, tmp_path / "own")
    assert (own / "features" / "ab" / "unit.npy").read_bytes() == b"features"
    assert (own / "features" / "ab" / "unit.npy").is_symlink()  # linked, not copied
    assert not (own / "pretrain").exists()  # a run would resume the demo's finished checkpoint and train nothing
    (own / "features" / "ef").mkdir()  # what a run writes stays in its own root
    assert not (root / "features" / "ef").exists()


def test_a_capability_wider_than_the_cpus_is_refused_and_the_others_are_not(monkeypatch):
    import torch

    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert "this CPU's widest is avx2" in refusal("avx512")
    assert refusal("avx2") is None and refusal("default") is None
    assert {name for name, *_ in RUNS} >= {a for pair in PAIRS for a in pair}


def _run(name, deterministic, seconds, sha, top1):
    return {"name": name, "deterministic": deterministic, "capability": None, "trained_on": "cpu AVX2",
            "seconds": seconds, "weights_sha256": sha, "top1": top1, "map": 0.7,
            "ci": {"top1": [top1 - 0.1, top1 + 0.1], "map": [0.6, 0.8]}}


def test_the_table_gives_each_run_its_cost_figures_and_verdicts():
    report = {"machine": {"cpu": "a CPU", "cores": 2, "capability": "AVX2", "torch": "2.11.0", "python": "3.11"},
              "demo": {"model": "vggish_fc", "width_mult": 0.25, "epochs": 20, "benchmark": "esc50"},
              "runs": [_run("not pinned", False, 200.0, "a", 0.6), _run("pinned avx2", True, 300.0, "b", 0.55),
                       _run("pinned avx2, again", True, 250.0, "b", 0.55)],
              "refused": {"pinned avx512": "ATEN_CPU_CAPABILITY=avx512: this CPU's widest is avx2"},
              "identical": [["pinned avx2", "pinned avx2, again"]],
              "differences": [{"a": "not pinned", "b": "pinned avx2", "metric": "top1", "difference": 0.05,
                               "ci": [-0.04, 0.15], "within_noise": True}]}
    text = markdown(report)
    assert "| pinned avx2 | cpu AVX2 | 300 s | 1.50x | 55.0 [45.0, 65.0] | 70.0 [60.0, 80.0] |" in text
    assert "- pinned avx512: not run here: ATEN_CPU_CAPABILITY=avx512" in text
    assert "- Bit-identical weights: pinned avx2 and pinned avx2, again; every other pair differs." in text
    assert "- Top-1: not pinned minus pinned avx2 = +5.0 points, paired 95% interval [-4.0, +15.0]: within noise." in text
    report["identical"] = []
    assert "- Bit-identical weights: none: every pair of runs ends with different weights." in markdown(report)


def test_the_docs_block_says_how_to_make_its_figures(tmp_path):
    from mmvideos.tooling.docs import determinism_block

    assert determinism_block(tmp_path).startswith("Not measured yet: `mmvideos bench --determinism` writes")
