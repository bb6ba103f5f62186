"""The ``mmvideos`` command: the whole pipeline (``run``, ``compile``) and every stage alone.

Each stage subcommand takes input and output folders and the same ``params.yaml`` section the
Kubeflow pipeline uses, and calls the same plain function its component calls; ``dvc.yaml``
chains these subcommands. The commands come in four groups, a module each: ``cluster`` (the
whole pipeline, locally or on Kubeflow), ``use`` (embed one's audio with the model, open a run's
pages), ``stages`` (one command per stage) and ``tools`` (gc, models, docs, bench); ``common``
holds what they share.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from pathlib import Path

from mmvideos import __version__
from mmvideos.cli import cluster, stages, tools, use
from mmvideos.settings import load_params


#: The options that go before the command (``mmvideos --params FILE run``, not after it).
GLOBAL_OPTIONS = ("--params", "-v", "--verbose", "--allow-outside")


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose "unrecognized arguments" error says where a global option goes."""

    def error(self, message: str):
        misplaced = [arg.split("=")[0] for arg in message.partition("unrecognized arguments:")[2].split()
                     if arg.split("=")[0] in GLOBAL_OPTIONS]
        if misplaced:
            message += (f" ({', '.join(misplaced)} is a global option: it goes before the command, "
                        f"e.g. mmvideos {misplaced[0]}{' FILE' if misplaced[0] == '--params' else ''} run ...)")
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``mmvideos`` command tree."""
    parser = _Parser(
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
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in (cluster, use, stages, tools):
        group.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mmvideos`` console script.

    Exit status: 0 done, 1 a runtime failure (a task failed, a verdict is negative), 2 a usage
    error (the command line or a setting is wrong: fix it and run again), 130 interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help and --version (0), a usage error (2)
        return int(exc.code or 0)
    if args.command is None:  # bare `mmvideos`: what it can do
        parser.print_help()
        return 0
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.allow_outside:
            os.environ["MMVIDEOS_ALLOW_OUTSIDE"] = "1"  # the pipeline's tasks inherit it
        if args.command not in _NO_PARAMS:
            try:
                load_params(args.params)  # every section, key, type and range, before any work
            except (ValueError, OSError) as exc:
                raise UsageError(str(exc)) from exc
        status = args.func(args)  # a command that reports a verdict (doctor) returns its exit status
    except KeyboardInterrupt:
        print(f"mmvideos {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line: what failed and what to do; the traceback with -v
        if args.verbose:
            traceback.print_exc()
        print(f"mmvideos {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2 if isinstance(exc, _USAGE) else 1
    return status or 0


class UsageError(ValueError):
    """A wrong setting or parameter file: exit status 2, like a wrong command line."""


#: What a command raises about its own arguments and settings (a folder that is not there, a value
#: out of range, a malformed URI): usage errors, exit status 2. Anything else failed while running: 1.
_USAGE = (ValueError, FileNotFoundError, NotADirectoryError)


#: Commands that do not read the parameter file (the rest validate it whole before starting).
_NO_PARAMS = {"demo-corpus", "models", "demo-benchmark", "bench", "embed", "open"}


def _one_line(exc: BaseException) -> str:
    """An exception as one line: its message (first line), its type where the message alone
    would not say what went wrong, and a pointer to ``-v`` for the traceback."""
    text = " ".join(str(exc).split()) if isinstance(exc, (ValueError, RuntimeError, OSError)) else ""
    if isinstance(exc, MemoryError) or not text:
        text = f"{type(exc).__name__}: {' '.join(str(exc).split()) or 'no message'}"
    return f"{text} (run with -v for the traceback)" if len(text) < 2000 else text[:2000] + "..."


if __name__ == "__main__":
    sys.exit(main())
