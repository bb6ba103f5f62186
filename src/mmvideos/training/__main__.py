"""``python -m mmvideos.training``: one rank of pretraining, the entry point torchrun starts.

``torchrun --nproc_per_node=N -m mmvideos.training ...`` on one machine (what
:func:`mmvideos.training.loop.launch` runs), and on every node of a Kubeflow Trainer ``TrainJob``
(:mod:`mmvideos.cluster.trainjob`). The settings are ``params.yaml``'s ``pretrain`` section,
each overridable by a flag; the stage itself is :mod:`mmvideos.stages.pretrain`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from typing import Any

from mmvideos.models import MODEL_NAMES
from mmvideos.settings import load_params
from mmvideos.stages.pretrain import export_files
from mmvideos.training.config import PretrainConfig, pretrain_config


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
        prog="python -m mmvideos.training",
        description="Pre-train an audio model on mmvideos feature shards (paper section 3). "
                    "Distributed: torchrun --nproc_per_node=N -m mmvideos.training ...",
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
    parser.add_argument("--data-root", default=None,
                        help="the data root the feature index names its shards in (local or gs://)")
    parser.add_argument("--force", action="store_true",
                        help="resume --out's checkpoint even if settings that change the result differ from it")
    parser.add_argument("--export-to", default=None,
                        help="also place the exported model (every file of --out but the checkpoint) here, a folder "
                             "or gs:// prefix: a multi-node job's output, which the pipeline reads back")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point (``python -m mmvideos.training --help``); prints the summary."""
    args = _parse_args(argv)
    section = load_params(args.params).get("pretrain") or {}
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
                           force=args.force, data_root=args.data_root)
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
