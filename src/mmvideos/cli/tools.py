"""Tools around the pipeline: garbage collection of a data root, the model table, docs, benchmarks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mmvideos.cli import common


def cmd_gc(args: argparse.Namespace) -> None:
    from mmvideos.data.atomic import stale_scratch
    from mmvideos.data.dataroot import collect_garbage

    found = collect_garbage(common.root(args).uri, args.keep_runs, args.min_age_hours * 3600, delete=args.delete)
    for uri in found.files:
        print(uri)
    scratch = stale_scratch(delete=args.delete)  # this machine's scratch folders left by killed runs
    for folder, _ in scratch:
        print(folder)
    verb = "deleted" if args.delete else "would delete (run again with --delete)"
    print(f"{verb}: {len(found.files)} files, {found.bytes / 1e6:.1f} MB, {found.units} units; "
          f"{found.kept_units} units kept; {len(scratch)} scratch folders of ended runs, "
          f"{sum(size for _, size in scratch) / 1e6:.1f} MB", file=sys.stderr)


def cmd_verify(args: argparse.Namespace) -> int:
    from mmvideos.data.dataroot import UNIT_STAGES
    from mmvideos.data.integrity import verify_root

    root = common.root(args).uri
    checked, problems = verify_root(root, UNIT_STAGES, repair=args.repair)
    for problem in problems:
        moved = f" -> moved to {problem.moved_to}" if problem.moved_to else ""
        print(f"{problem.stage} {problem.key}: {problem.reason}{moved}")
    if not problems:
        print(f"{checked} units verified, all whole", file=sys.stderr)
        return 0
    if args.repair:
        print(f"{len(problems)} of {checked} units were corrupt and are quarantined under {root}/quarantine; the next "
              "run of their stages recomputes them", file=sys.stderr)
        return 0
    print(f"{len(problems)} of {checked} units are corrupt: run `mmvideos verify --repair` to quarantine them (their "
          "stages then recompute them)", file=sys.stderr)
    return 1


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (the latest run's manifests are always kept), "
                                         f"got {value}")
    return value


def cmd_models(args: argparse.Namespace) -> None:
    from mmvideos.models import model_table

    print(model_table(args.num_classes, args.width_mult).to_string(index=False))


def cmd_docs(args: argparse.Namespace) -> None:
    from mmvideos.tooling.docs import generate

    changed = generate(Path(args.results), Path(args.docs), Path(args.readme), check=args.check,
                       bench=args.bench and Path(args.bench), bench_gpu=args.bench_gpu and Path(args.bench_gpu))
    if args.check and changed:
        raise ValueError(f"out of date with {args.results} or the bench reports: "
                         f"{', '.join(map(str, changed))} (run `make docs`)")
    print(("wrote " + ", ".join(map(str, changed))) if changed else "docs are up to date")


def cmd_bench(args: argparse.Namespace) -> None:
    if args.scale and args.reduce:
        from mmvideos.bench.reduce import main as reduce

        reduce(args.output, tuple(args.clips), tuple(args.only))
        return
    if args.determinism:
        from mmvideos.bench.determinism import main as determinism

        determinism(output=args.output, features=args.features)
        return
    if args.leakage:
        from mmvideos.bench.leakage import main as leakage

        leakage(output=args.output)
        return
    if args.scale:
        from mmvideos.bench.scale import main as scale

        scale(write=args.write, output=args.output)
        return
    from mmvideos.bench.run import run_all

    run_all(device=args.device, models=args.models, batch=args.batch, steps=args.steps, width_mult=args.width_mult,
            output=args.output, quick=args.quick, figures=args.figures)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add this group's commands to the ``mmvideos`` command tree."""
    p = sub.add_parser("gc", help="list (or delete) the data root's shards that no kept run references",
                       description="Garbage collection of a data root. A stage's kept manifests are the N it "
                                   "wrote or reused most recently; shards none of them names are listed, and "
                                   "deleted with --delete. Shards younger than --min-age-hours are kept: a run in "
                                   "flight may not have written its manifest yet. Scratch folders (mmvideos-*) in this "
                                   "machine's temporary folder whose process has ended (a killed run's) go too.")
    common.data_root_option(p)
    p.add_argument("--keep-runs", type=_at_least_one, default=3,
                   help="manifests kept per stage, at least 1 (default: %(default)s)")
    p.add_argument("--min-age-hours", type=float, default=24.0,
                   help="never collect what is younger than this (default: %(default)s)")
    p.add_argument("--delete", action="store_true", help="delete them (default: only list)")
    p.set_defaults(func=cmd_gc)

    p = sub.add_parser("verify", help="check every unit of the data root against its commit record",
                       description="Verify a data root: every committed unit's COMMIT.json is self-checked and each "
                                   "of its files hashed against it. Corrupt units are listed (exit status 1); with "
                                   "--repair they are moved to <root>/quarantine/ and the next run of their stage "
                                   "recomputes them. Every reused unit is also checked this way when a stage "
                                   "reuses it.")
    common.data_root_option(p)
    p.add_argument("--repair", action="store_true", help="quarantine the corrupt units (default: only list them)")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("models", help="print parameters and FLOPs of the five architectures at 100x64")
    p.add_argument("--num-classes", type=int, default=10998, help="vocabulary size (default: the paper's 10,998)")
    p.add_argument("--width-mult", type=float, default=1.0, help="channel width multiplier (default 1.0)")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("docs", help="write the run's figures into docs/ from results/ (make docs)",
                       description="Write docs/results.md and refresh the marked blocks of docs/*.md and README.md "
                                   "from the results/ of a `dvc repro` (labels, pretraining, transfer, drift) "
                                   "and the reports of `make bench` and `make bench-gpu`.")
    p.add_argument("--results", default="results", help="results folder (default: %(default)s)")
    p.add_argument("--docs", default="docs", help="documentation folder (default: %(default)s)")
    p.add_argument("--readme", default="README.md", help="README with marked blocks (default: %(default)s)")
    p.add_argument("--bench", help="folder of `mmvideos bench`'s bench.json (default: bench/ beside --results)")
    p.add_argument("--bench-gpu", help="folder of `make bench-gpu`'s bench_gpu.json, where it has run "
                                       "(default: bench-gpu/ beside --results)")
    p.add_argument("--check", action="store_true", help="write nothing; fail if a generated file is stale")
    p.set_defaults(func=cmd_docs)

    p = sub.add_parser("bench", help="throughput figures, each next to its reference measured in the same run "
                                     "(log-mel vs librosa, the loader, annotators, training per model), and the "
                                     "warm demo run per task: writes bench.json, bench.md and bench.png")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--models", nargs="*", default=None, help="architectures to time (default: all five)")
    p.add_argument("--batch", type=int, default=8, help="training batch for the timing (default 8)")
    p.add_argument("--steps", type=int, default=3, help="timed training steps per model (default 3)")
    p.add_argument("--width-mult", type=float, default=1.0, help="model width (default 1.0: full size)")
    p.add_argument("--output", default="bench", help="folder of the report (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="smaller inputs, no annotators, no demo run: a smoke run")
    p.add_argument("--figures", nargs="+", default=None, metavar="NAME",
                   help="run only these parts: log-mel, loader, decode, frames, visual, annotators, training, "
                        "demo (`mmvideos run` timed per task, warm: fresh workdir and data root, cached downloads; "
                        "not with --quick) (default: all)")
    p.add_argument("--scale", action="store_true",
                   help="instead: run the map stages on 1x, 4x and 16x a generated corpus (seconds per video "
                        "should stay flat), then again with 5%% new videos (what is reused)")
    p.add_argument("--reduce", action="store_true",
                   help="with --scale: the reduce side instead: gathers, merge_labels, label_drift, packing, one rank's "
                        "pretraining start-up and epoch, and ingest's near-duplicate index on synthetic data of "
                        "--clips clips, each in a child process (peak RSS, seconds, extrapolated to 15 M clips), "
                        "saved under 'reduce' in --output's scale.json")
    p.add_argument("--clips", type=int, nargs="+", default=[10_000, 100_000, 1_000_000],
                   help="with --scale --reduce: corpus sizes in clips (default: %(default)s)")
    from mmvideos.bench import REDUCE_STEPS

    p.add_argument("--only", nargs="+", choices=REDUCE_STEPS, default=list(REDUCE_STEPS), metavar="STEP",
                   help="with --scale --reduce: measure only these steps (the steps whose output a chosen one "
                        "reads run too, unrecorded; the others' figures in scale.json are kept): %(choices)s "
                        "(default: all)")
    p.add_argument("--leakage", action="store_true",
                   help="instead: the leakage guard's recall per edit and false matches per min_votes on a "
                        "generated set of edited benchmark copies and negatives (leakage.md, leakage.json)")
    p.add_argument("--determinism", action="store_true",
                   help="instead: pretrain the demo not pinned, pinned to AVX2 (twice), to no SIMD and to AVX-512 "
                        "where the CPU has it (pretrain.deterministic), transfer each model to the demo benchmark and "
                        "compare them: time, kernels, bit-identical weights, Top-1 and mAP with paired intervals "
                        "(determinism.md, determinism.json; needs `dvc repro features` first, about 25 min on 2 cores)")
    p.add_argument("--features", default="data/features",
                   help="with --determinism: the demo's features folder (default: %(default)s)")
    p.add_argument("--write", default=None, help="with --scale: also write the sizing plan (e.g. docs/sizing.md; "
                                                 "`mmvideos docs` writes it from --output's scale.json)")
    p.set_defaults(func=cmd_bench)
