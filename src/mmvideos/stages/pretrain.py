"""The ``pretrain`` stage: pre-training on the feature shards (paper section 3).

The loop, the loss and its L2 term, distributed data parallel and resuming are
:mod:`mmvideos.training.loop`; the settings are :class:`PretrainConfig`
(:mod:`mmvideos.training.config`). This module is what callers import: it re-exports both, and
imports the loop (torch, pandas, matplotlib) only when one of its functions is first used
(PEP 562), so ``from mmvideos.stages.pretrain import PretrainConfig``, which validating ``params.yaml``
does for every command, stays light. Each rank's command line, ``python -m mmvideos.training``
(what torchrun starts), is :mod:`mmvideos.training.__main__`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmvideos.data import storage
from mmvideos.training.config import PretrainConfig, pretrain_config

__all__ = ["PretrainConfig", "changed_settings", "checkpoint_uri", "evaluate", "export_files", "launch", "load_model",
           "pretrain", "pretrain_config"]

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


def export_files(out_dir: str | Path, target: str) -> list[str]:
    """Copy the exported model of ``out_dir`` (every file but the checkpoint) to ``target``; their URIs."""
    from mmvideos.training.checkpoint import CHECKPOINT

    placed = []
    for path in sorted(Path(out_dir).iterdir()):
        if path.is_file() and path.name != CHECKPOINT:
            placed.append(storage.join(target, path.name))
            storage.put_file(path, placed[-1])
    return placed

