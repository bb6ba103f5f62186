"""The ``pretrain`` stage: pre-training on the feature shards (paper section 3), and its command line.

The loop, the loss and its L2 term, distributed data parallel and resuming are
:mod:`mmvideos.training.loop`; the settings are :class:`PretrainConfig`
(:mod:`mmvideos.training.config`). This module is what callers import: it re-exports both, and
imports the loop (torch, pandas, matplotlib) only when one of its functions is first used
(PEP 562), so ``from mmvideos.train import PretrainConfig``, which validating ``params.yaml``
does for every command, stays light. ``python -m mmvideos.train`` (run by torchrun on every rank)
is :func:`main`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from mmvideos import config as config_mod
from mmvideos import storage
from mmvideos.models import MODEL_NAMES
from mmvideos.training.config import PretrainConfig, pretrain_config

__all__ = ["PretrainConfig", "changed_settings", "checkpoint_uri", "evaluate", "export_files", "launch", "load_model",
           "main", "pretrain", "pretrain_config"]

#: Functions of the training loop's modules, imported on first use (module docstring).
_LOOP = ("changed_settings", "checkpoint_uri", "launch", "pretrain")


def __getattr__(name: str) -> Any:
    if name in _LOOP:
        from mmvideos.training import loop

        return getattr(loop, name)
    if name == "evaluate":
        from mmvideos.training.evaluation import evaluate

        return evaluate
    if name == "load_model":
        from mmvideos.training.checkpoint import load_model

        return load_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _attribute_help(cls: type) -> dict[str, str]:
    """``{field: text}`` from the ``Attributes:`` section of a dataclass docstring."""
    helps: dict[str, str] = {}
    name = None
    for line in (cls.__doc__ or "").split("Attributes:", 1)[-1].splitlines():
        field, sep, text = line.strip().partition(": ")
        if sep and field.isidentifier() and line.startswith(" " * 8) and not line.startswith(" " * 12):
            name, helps[field] = field, text
        elif name and line.strip():
            helps[name] += " " + line.strip()
    return helps


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mmvideos.train",
        description="Pre-train an audio model on mmvideos feature shards (paper section 3). "
                    "Distributed: torchrun --nproc_per_node=N -m mmvideos.train ...",
    )
    parser.add_argument("--features", required=True, help="features stage output folder (local or gs://)")
    parser.add_argument("--out", required=True, help="output folder; training resumes from its checkpoint.pt")
    parser.add_argument("--params", default=None,
                        help="params.yaml whose 'pretrain' section gives the settings (default: ./params.yaml, "
                             "else the copy packaged with mmvideos)")
    overrides = parser.add_argument_group("overrides of the params.yaml settings (defaults, the paper's, in brackets)")
    helps = _attribute_help(PretrainConfig)
    choices = {"model": MODEL_NAMES, "device": ("auto", "cuda", "cpu")}
    for field in dataclasses.fields(PretrainConfig):
        kind = {"float": float, "int": int, "int | None": int, "str": str, "bool": None}[str(field.type)]
        flag, text = "--" + field.name.replace("_", "-"), f"{helps[field.name]} [{field.default}]"
        if kind is None:
            overrides.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            overrides.add_argument(flag, type=kind, default=None, choices=choices.get(field.name),
                                   metavar=field.name.upper(), help=text)
    parser.add_argument("--resume-from", default=None,
                        help="checkpoint URI in the data root (local or gs://) kept up to date after every epoch "
                             "and resumed from when --out has none")
    parser.add_argument("--force", action="store_true",
                        help="resume --out's checkpoint even if settings that change the result differ from it")
    parser.add_argument("--export-to", default=None,
                        help="also place the exported model (every file of --out but the checkpoint) here, a folder "
                             "or gs:// prefix: a multi-node job's output, which the pipeline reads back")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return parser.parse_args(argv)


def export_files(out_dir: str | Path, target: str) -> list[str]:
    """Copy the exported model of ``out_dir`` (every file but the checkpoint) to ``target``; their URIs."""
    from mmvideos.training.checkpoint import CHECKPOINT

    placed = []
    for path in sorted(Path(out_dir).iterdir()):
        if path.is_file() and path.name != CHECKPOINT:
            placed.append(storage.join(target, path.name))
            storage.put_file(path, placed[-1])
    return placed


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point (``python -m mmvideos.train --help``); prints the summary."""
    args = _parse_args(argv)
    section = config_mod.load_params(args.params).get("pretrain") or {}
    if args.model is not None:  # any architecture may be named here, listed in pretrain.models or not
        section = {k: v for k, v in section.items() if k != "models"} | {"model": args.model}
    cfg = pretrain_config(section)
    changes = {f.name: getattr(args, f.name) for f in dataclasses.fields(PretrainConfig)
               if getattr(args, f.name) is not None}
    cfg = dataclasses.replace(cfg, **changes)
    import torch.distributed as dist

    from mmvideos.training.loop import pretrain

    try:
        summary = pretrain(args.features, args.out, cfg, progress=args.progress, resume_from=args.resume_from,
                           force=args.force)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        if args.export_to:
            export_files(args.out, args.export_to)
        print(json.dumps(summary, indent=2, default=str))
    return summary


if __name__ == "__main__":
    main()
