"""One command per stage (what dvc.yaml chains), each over the same plain function its component calls."""

from __future__ import annotations

import argparse
import dataclasses

from mmvideos.cli import common
from mmvideos.config import from_dict
from mmvideos.data import storage
from mmvideos.settings import load_params


def cmd_demo_corpus(args: argparse.Namespace) -> None:
    from mmvideos.demo.corpus import fetch_demo_corpus

    if args.output is None:
        print(fetch_demo_corpus(None))
        return
    with storage.output_folder(args.output) as out:
        fetch_demo_corpus(out)
    print(args.output)


def cmd_fingerprint_source(args: argparse.Namespace) -> None:
    from mmvideos.data.atomic import write_json
    from mmvideos.data.sources import source_entries, source_fingerprint

    listing = {"source": args.source, "files": len(source_entries(args.source)),
               "fingerprint": source_fingerprint(args.source)}
    if args.output:
        with storage.output_file(args.output) as path:
            write_json(listing, path)
    common.print_summary(listing)


def cmd_ingest(args: argparse.Namespace) -> None:
    from mmvideos.demo.corpus import resolve_source
    from mmvideos.stages.ingest import IngestConfig, ingest, require_usable

    with storage.output_folder(args.output) as out:
        common.print_summary(ingest(resolve_source(args.source), out, common.root(args), common.params(args, "ingest", IngestConfig)))
    require_usable(args.output)


def cmd_clip(args: argparse.Namespace) -> None:
    from mmvideos.stages.clip import ClipConfig, clip_videos
    from mmvideos.stages.ingest import read_videos

    with storage.output_folder(args.output) as out:
        common.print_summary(clip_videos(read_videos(args.videos), out, common.params(args, "clip", ClipConfig), common.root(args), **common.slot(args)))


def cmd_annotate_visual(args: argparse.Namespace) -> None:
    from mmvideos.stages.annotate import VisualConfig, annotate_visual

    with storage.output_folder(args.output) as out:
        common.print_summary(annotate_visual(args.clips, out, common.params(args, "annotate_visual", VisualConfig), common.root(args),
                               **common.slot(args)))


def cmd_annotate_audio(args: argparse.Namespace) -> None:
    from mmvideos.stages.annotate import AudioConfig, annotate_audio

    with storage.output_folder(args.output) as out:
        common.print_summary(annotate_audio(args.clips, out, common.params(args, "annotate_audio", AudioConfig), common.root(args),
                              **common.slot(args)))


def cmd_merge_labels(args: argparse.Namespace) -> None:
    from mmvideos.stages.annotate import MergeConfig, merge_labels
    from mmvideos.stages.label_audit import label_audit

    cfg = common.params(args, "merge_labels", MergeConfig)
    with common.outputs(args, common.MERGE_LABELS_RESULTS) as out:
        common.print_summary(merge_labels(args.clips, args.visual, args.audio, out, cfg))
        label_audit(args.clips, out, out / "audit.html", top=min(12, cfg.top_categories), root=common.root(args))


def cmd_label_drift(args: argparse.Namespace) -> None:
    from mmvideos.stages.drift import DriftConfig, label_drift

    cfg = common.params(args, "label_drift", DriftConfig)
    if args.reference is not None:
        cfg = dataclasses.replace(cfg, reference=args.reference)
    with storage.output_folder(args.output) as out:
        common.print_summary(label_drift(args.labels, out, cfg))


def cmd_features(args: argparse.Namespace) -> None:
    from mmvideos.stages.features import FeatureConfig, extract_features

    with storage.output_folder(args.output) as out:
        common.print_summary(extract_features(args.clips, args.labels, out, common.root(args), common.params(args, "features", FeatureConfig),
                                **common.slot(args)))


def cmd_gather(args: argparse.Namespace) -> None:
    from mmvideos.data.dataroot import gather

    with storage.output_folder(args.output) as out:
        common.print_summary(gather(args.parts, out, args.stage, common.root(args)))


def cmd_pretrain(args: argparse.Namespace) -> None:
    from mmvideos.stages.pretrain import checkpoint_uri, pretrain_config, pretrain_seeds, seed_folders

    from mmvideos.model_card import write_model_card

    cfg = pretrain_config(load_params(args.params).get("pretrain"), args.model)
    with common.outputs(args, common.PRETRAIN_RESULTS) as out:  # pretrain.seeds > 1: one model per seed-<seed>/
        root = common.root(args)
        common.print_summary(pretrain_seeds(args.features, out, cfg, force=args.force, data_root=root.uri,
                                            resume_from=lambda c: checkpoint_uri(root, args.features, c)))
        for folder in seed_folders(str(out)).values():
            write_model_card(folder, args.features)


def cmd_transfer(args: argparse.Namespace) -> None:
    from mmvideos.demo.benchmark import resolve_benchmark
    from mmvideos.stages.transfer import TransferConfig, transfer

    params = load_params(args.params)
    data = args.data if args.data is not None else params.get("benchmarks", {}).get(args.benchmark)
    with storage.output_folder(args.output) as out:
        common.print_summary(transfer(args.benchmark, resolve_benchmark(args.benchmark, data), args.checkpoint, out,
                        from_dict(TransferConfig, params.get("transfer"))))


def cmd_report(args: argparse.Namespace) -> None:
    from mmvideos.stages.report import report

    with storage.output_folder(args.output) as out:
        common.print_summary(report(args.results, out))
        print((out / "results.md").read_text())


def cmd_demo_benchmark(args: argparse.Namespace) -> None:
    from mmvideos.demo.benchmark import build_demo_benchmark, resolve_benchmark

    if args.output is None:
        print(resolve_benchmark("esc50", ""))
        return
    with storage.output_folder(args.output) as out:
        build_demo_benchmark(out)
    print(args.output)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add this group's commands to the ``mmvideos`` command tree."""
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
    common.data_root_option(p)
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("clip", help="cut videos into 3-5 s clips: 16 kHz audio and 3 fps frames in shards")
    p.add_argument("--videos", required=True, help="ingest output folder (videos.parquet)")
    p.add_argument("--output", required=True, help="output folder, local or gs:// (manifest, clips.parquet, rejects.parquet)")
    common.map_options(p)
    p.set_defaults(func=cmd_clip)

    p = sub.add_parser("annotate-visual", help="label clips with an image classifier on their 3 fps frames (top-10)")
    p.add_argument("--clips", required=True, help="clip folder (local or gs://)")
    p.add_argument("--output", required=True, help="output folder, local or gs:// (visual.parquet, classes.csv, manifest)")
    common.map_options(p)
    p.set_defaults(func=cmd_annotate_visual)

    p = sub.add_parser("annotate-audio", help="label clips with an AudioSet tagger on 1-s segments (top-5 over a threshold)")
    p.add_argument("--clips", required=True, help="clip folder (local or gs://)")
    p.add_argument("--output", required=True, help="output folder, local or gs:// (audio.parquet, classes.csv, manifest)")
    common.map_options(p)
    p.set_defaults(func=cmd_annotate_audio)

    p = sub.add_parser("merge-labels", help="merge visual and audio labels into one vocabulary, label table and statistics")
    p.add_argument("--clips", required=True, help="clip folder")
    p.add_argument("--visual", required=True, help="annotate-visual output folder")
    p.add_argument("--audio", required=True, help="annotate-audio output folder")
    p.add_argument("--output", required=True, help="output folder, local or gs:// (labels.parquet, vocabulary.parquet, stats)")
    common.data_root_option(p)  # the clip units the label audit page shows
    common.results_option(p, "the statistics and summary.json (" + ", ".join(common.MERGE_LABELS_RESULTS) + ")")
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
    common.map_options(p)
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("gather", help="concatenate the outputs of a map stage's task slots (manifests and tables only)")
    p.add_argument("parts", nargs="+", help="the slots' output folders")
    p.add_argument("--stage", required=True, choices=["clip", "annotate_visual", "annotate_audio", "features"])
    p.add_argument("--output", required=True, help="output folder, local or gs://")
    common.data_root_option(p)
    p.set_defaults(func=cmd_gather)

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
    common.data_root_option(p)
    common.results_option(p, "the summary and training curves (" + ", ".join(common.PRETRAIN_RESULTS) + ")")
    p.set_defaults(func=cmd_pretrain)

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

    p = sub.add_parser("demo-benchmark", help="build the demo benchmark (ESC-50 layout, FoxDot recordings)")
    p.add_argument("--output", help="folder (default: in the cache)")
    p.set_defaults(func=cmd_demo_benchmark)
