"""``mmvideos bench --determinism``: what ``pretrain.deterministic`` costs, and how far apart its results land.

The demo's pretraining (the features of the committed ``dvc repro``, ``data/features``, and
params.yaml's ``pretrain`` settings) runs in fresh processes, each with a data root of its own (the
demo's units linked, its checkpoint left out, so every run trains from scratch):

* not pinned: the machine's widest kernels and every core;
* pinned to AVX2 (:mod:`mmvideos.training.determinism`), twice: are the weights bit-identical?
* pinned to no SIMD (``ATEN_CPU_CAPABILITY=default``);
* pinned to AVX-512, where the CPU has it (else its refusal is recorded).

Each model is transferred to the demo benchmark as the ``transfer`` stage does. Every run's
pretrained row is resampled on the same bootstrap draws of the test clips (``transfer.seed`` seeds
them), so two runs compare by the paired bootstrap, as two rows of one report do. Writes
``determinism.json`` and ``determinism.md`` under ``--output``; ``mmvideos docs`` puts the table
in docs/benchmarks.md.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from mmvideos.bench import save

#: (name, pretrain.deterministic, ATEN_CPU_CAPABILITY pinned or None for the machine's own).
RUNS = (("not pinned", False, None), ("pinned avx2", True, "avx2"), ("pinned avx2, again", True, "avx2"),
        ("pinned default (no SIMD)", True, "default"), ("pinned avx512", True, "avx512"))
#: The benchmark the models are compared on (the demo's, in ESC-50's layout).
BENCHMARK = "esc50"
#: The pairs whose paired differences the table states: (a, b).
PAIRS = (("not pinned", "pinned avx2"), ("pinned avx2", "pinned default (no SIMD)"),
         ("pinned avx512", "pinned avx2"))


def linked_root(root: Path, into: Path) -> Path:
    """A data root of its own whose files link to ``root``'s, less its checkpoints (``pretrain/``)."""
    root = root.resolve()
    shutil.copytree(root, into, copy_function=os.symlink,
                    ignore=lambda folder, names: ["pretrain"] if Path(folder) == root else [])
    return into


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _mmvideos(*args: str | Path, env: dict[str, str] | None = None, log: Path) -> float:
    """Run ``mmvideos ARGS`` (this interpreter's), its output to ``log``; returns its wall seconds."""
    command = [str(Path(sys.executable).with_name("mmvideos")), *map(str, args)]
    start = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}); its log: {log}")
    return time.perf_counter() - start


def refusal(capability: str) -> str | None:
    """Why this CPU cannot pin ``capability`` (None: it can)."""
    from mmvideos.training.determinism import check_supported

    try:
        check_supported(capability)
    except ValueError as error:
        return str(error)
    return None


def one_run(name: str, deterministic: bool, capability: str | None, params: dict, features: Path, root: Path,
            folder: Path) -> dict[str, Any]:
    """Pretrain and transfer once in ``folder``; the run's record (its time, kernels, weights' hash,
    pretrained row)."""
    from mmvideos.evaluation.uncertainty import decode

    folder.mkdir()
    settings = folder / "params.yaml"
    settings.write_text(yaml.safe_dump({**params, "pretrain": {**params["pretrain"], "deterministic": deterministic}}))
    env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    if capability:
        env["ATEN_CPU_CAPABILITY"] = capability
    print(f"{name}: pretraining ...", flush=True)
    seconds = _mmvideos("--params", settings, "pretrain", "--features", features, "--output", folder / "model",
                        "--results", folder / "results", "--data-root", linked_root(root, folder / "root"),
                        env=env, log=folder / "pretrain.log")
    _mmvideos("--params", settings, "transfer", "--benchmark", BENCHMARK, "--checkpoint", folder / "model",
              "--output", folder / "transfer", log=folder / "transfer.log")
    trained_on = json.loads((folder / "results" / "environment.json").read_text())["weights_trained_on"]
    result = json.loads((folder / "transfer" / "metrics.json").read_text())
    row = next(r for r in result["rows"] if r["model"] == "pretrained")
    print(f"{name}: {seconds:.0f} s, {trained_on}, Top-1 {100 * row['top1']:.1f}", flush=True)
    return {"name": name, "deterministic": deterministic, "capability": capability, "trained_on": trained_on,
            "seconds": seconds, "weights_sha256": _sha256(folder / "model" / "model.safetensors"),
            **{m: row[m] for m in ("top1", "map")}, "ci": {m: row["ci"][m] for m in ("top1", "map")},
            "resampled": {m: decode(row["resampled"][m]) for m in ("top1", "map")}}


def measure(features: Path = Path("data/features"), root: Path | None = None,
            params_file: Path = Path("params.yaml")) -> dict[str, Any]:
    """Every run of :data:`RUNS` this CPU can pin, their identical weights and paired differences."""
    import torch

    from mmvideos.evaluation.uncertainty import compare
    from mmvideos.settings import load_params

    params = load_params(params_file)
    root = Path(root or params["data"]["root"])
    if not (features / "index.parquet").is_file():
        raise FileNotFoundError(f"{features} holds no features: run `dvc repro features` (or `make lock`) first")
    runs, refused = [], {}
    with tempfile.TemporaryDirectory(prefix="mmvideos-determinism-") as tmp:
        for number, (name, deterministic, capability) in enumerate(RUNS):
            if capability and (why := refusal(capability)):
                refused[name] = why
                continue
            runs.append(one_run(name, deterministic, capability, params, features, root, Path(tmp) / f"run-{number}"))
    by_name = {r["name"]: r for r in runs}
    identical = [[a["name"], b["name"]] for a, b in itertools.combinations(runs, 2)
                 if a["weights_sha256"] == b["weights_sha256"]]
    pairs = [(a, b) for a, b in PAIRS if a in by_name and b in by_name]
    differences = [d for a, b in pairs
                   for d in compare({n: by_name[n]["resampled"] for n in (a, b)},
                                    {n: {m: by_name[n][m] for m in ("top1", "map")} for n in (a, b)})]
    pretrain, models = params["pretrain"], params["pretrain"].get("models") or []
    return {"machine": {"cpu": _cpu_name(), "cores": os.cpu_count(), "capability": torch.backends.cpu.get_cpu_capability(),
                        "torch": torch.__version__, "python": platform.python_version()},
            "demo": {"model": ", ".join(models) if isinstance(models, list) else models,
                     "width_mult": pretrain.get("width_mult"), "epochs": pretrain.get("epochs"), "benchmark": BENCHMARK},
            "runs": [{k: v for k, v in r.items() if k != "resampled"} for r in runs],
            "refused": refused, "identical": identical, "differences": differences}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def markdown(report: dict[str, Any]) -> str:
    """The cost and spread table, the paired differences and which weights came out identical."""
    machine, runs = report["machine"], report["runs"]
    base = next((r["seconds"] for r in runs if not r["deterministic"]), None)
    demo = report["demo"]
    lines = [f"Demo pretraining ({demo['model']} at width {demo['width_mult']}, {demo['epochs']} epochs) on "
             f"{machine['cpu']} ({machine['cores']} cores, widest kernels {machine['capability']}), torch "
             f"{machine['torch']}; each model transferred to the demo benchmark. Times are one run each on a "
             "shared machine: rough.", "",
             "| run | kernels that trained it | pretraining | vs not pinned | pretrained Top-1 [95% interval] | mAP [95% interval] |",
             "|---|---|---|---|---|---|"]
    for r in runs:
        ci = {m: "[" + ", ".join(f"{100 * v:.1f}" for v in r["ci"][m]) + "]" for m in ("top1", "map")}
        lines.append(f"| {r['name']} | {r['trained_on']} | {r['seconds']:.0f} s | "
                     + (f"{r['seconds'] / base:.2f}x" if base else "n/a")
                     + f" | {100 * r['top1']:.1f} {ci['top1']} | {100 * r['map']:.1f} {ci['map']} |")
    lines.append("")
    for name, why in report["refused"].items():
        lines.append(f"- {name}: not run here: {why}")
    same = report["identical"]
    lines.append("- Bit-identical weights: " + ("; ".join(" and ".join(pair) for pair in same)
                                                + "; every other pair differs." if same
                                                else "none: every pair of runs ends with different weights."))
    for d in report["differences"]:
        low, high = (100 * v for v in d["ci"])
        verdict = "within noise" if d["within_noise"] else "beyond noise"
        lines.append(f"- {d['metric'] == 'top1' and 'Top-1' or 'mAP'}: {d['a']} minus {d['b']} = "
                     f"{100 * d['difference']:+.1f} points, paired 95% interval [{low:+.1f}, {high:+.1f}]: {verdict}.")
    return "\n".join(lines)


def main(output: str | Path = "bench", features: str | Path = "data/features") -> dict[str, Any]:
    """Measure, write ``determinism.{json,md}`` under ``output`` and print the table."""
    report = measure(Path(features))
    save(report, markdown(report), output, "determinism")
    return report
