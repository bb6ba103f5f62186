"""Using what a run made: embed one's own audio with the model, open the run's pages."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_embed(args: argparse.Namespace) -> int:
    from mmvideos.encoder import audio_files, embed_files, load_encoder, write_embeddings

    if Path(args.output).suffix not in (".parquet", ".npy"):
        raise ValueError(f"--output {args.output}: name a .parquet or a .npy file")
    if args.pooling == "concat" and not args.seconds:
        raise ValueError("--pooling concat needs --seconds (the clip length it pads or cuts to, e.g. 5 for ESC-50)")
    encoder = load_encoder(args.model, args.device)
    files = audio_files(args.audio)
    table, failed = embed_files(files, encoder, args.pooling, args.seconds)
    for path, why in failed.items():
        print(f"skipped {path}: {why}", file=sys.stderr)
    if table.empty:
        raise RuntimeError(f"no audio embedded: none of the {len(files)} files has an audio stream PyAV can decode")
    written = write_embeddings(table, Path(args.output))
    print(f"embedded {len(table)} of {len(files)} files ({int(table['seconds'].sum())} s of audio) with "
          f"{encoder.card['arch']} x{encoder.card.get('width_mult', 1.0)}: "
          f"{len(table['clip_embedding'].iloc[0])}-d clip embeddings ({args.pooling}) and "
          f"{encoder.embedding_size}-d per-second ones -> {', '.join(map(str, written))}")
    return 1 if failed else 0


def cmd_open(args: argparse.Namespace) -> None:
    import webbrowser

    from mmvideos.cluster.pages import run_index

    index = run_index(Path(args.workdir), args.run)
    if args.print or not webbrowser.open(index.as_uri()):
        print(index)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add this group's commands to the ``mmvideos`` command tree."""
    p = sub.add_parser("embed", help="embed your own audio with a pretrained model (per second and per clip)",
                       description="Decode each file's first audio stream (any format PyAV reads, video files "
                                   "included), resample it to 16 kHz and embed every second with the model, as "
                                   "the pipeline's transfer step does; one clip embedding per file pools them. "
                                   "Exits 1 when a file could not be decoded (each is named).")
    p.add_argument("audio", nargs="+", help="audio or video files, or folders of them")
    p.add_argument("--model", required=True,
                   help="an exported model: a pretrain output folder, e.g. work/latest/models-vggish_fc")
    p.add_argument("--output", default="embeddings.parquet",
                   help="a .parquet file (one row per file: path, seconds, clip_embedding, second_embeddings) or "
                        "a .npy file (clip embeddings [files, D], with <name>.seconds.npy [seconds, 128] and "
                        "<name>.files.csv) (default: %(default)s)")
    p.add_argument("--pooling", choices=["mean_max", "concat"], default="mean_max",
                   help="clip embedding: mean and max over the seconds (256-d, any length) or the seconds side "
                        "by side at --seconds (the paper's; default: %(default)s)")
    p.add_argument("--seconds", type=int, default=None, help="with --pooling concat: the clip length in seconds")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: %(default)s)")
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("open", help="open a run's pages (index.html: results, labels, drift, training curves)",
                       description="Open the index page of a local run in the browser (or print its path): it "
                                   "links every page the run's tasks made, each a self-contained .html file.")
    p.add_argument("run", nargs="?", default=None,
                   help="the run's folder name under WORKDIR/outputs (default: the latest run)")
    p.add_argument("--workdir", default="work", help="the run's --workdir (default: %(default)s)")
    p.add_argument("--print", action="store_true", help="print the index page's path instead of opening it")
    p.set_defaults(func=cmd_open)
