"""The ``pretrain`` stage: pre-training on the feature shards (paper section 3).

The loop, the loss and its L2 term, distributed data parallel and resuming are
:mod:`mmvideos.training.loop`; the settings are :class:`PretrainConfig`
(:mod:`mmvideos.training.config`). This module is what callers import: it re-exports both, and
imports the loop (torch, pandas, matplotlib) only when one of its functions is first used
(PEP 562), so ``from mmvideos.stages.pretrain import PretrainConfig``, which validating ``params.yaml``
does for every command, stays light.

``pretrain.seeds`` above 1 trains one model per seed (:func:`pretrain_seeds`): each in its
``seed-<seed>/`` folder, with a ``summary.json`` over them that lists the seeds
(:func:`seed_folders` finds them again, for the transfer stage). On a cluster the seeds are
tasks of their own (the pipeline's fan-out over architecture and seed). Each rank's command line, ``python -m mmvideos.training``
(what torchrun starts), is :mod:`mmvideos.training.__main__`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmvideos.data import storage
from mmvideos.training.config import PretrainConfig, pretrain_config

# (names of the training loop's modules among them come from __getattr__ below)
__all__ = ["PretrainConfig", "changed_settings", "checkpoint_uri", "evaluate", "export_files", "launch",  # noqa: F822
           "load_model", "pretrain", "pretrain_config", "pretrain_seeds", "seed_folders"]  # noqa: F822

#: A model of several pre-trained with ``pretrain.seeds``: ``<out>/seed-<seed>/``.
SEED_FOLDER = "seed-{seed}"
#: The seeds of such a folder.
SEEDS = "seeds.json"

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



def pretrain_seeds(features_dir: str | Path, out_dir: str | Path, cfg: PretrainConfig,
                   resume_from: Callable[[PretrainConfig], str | None] = lambda cfg: None, **kwargs: Any) -> dict:
    """Pre-train one model per seed of ``cfg.seed_list`` (``launch``'s ``kwargs``); ``resume_from(cfg)`` is each
    seed's checkpoint URI in the data root. With ``cfg.deterministic`` each trains in a fresh process with its
    kernels pinned (:func:`mmvideos.training.determinism.run_pinned`).

    One seed: that model in ``out_dir``, its summary returned, as :func:`launch`. Several: each in
    ``out_dir/seed-<seed>/``, ``out_dir/summary.json`` (``{"model", "seeds", "per_seed": {seed: summary}}``) and
    ``out_dir/seeds.json`` (the seeds, for :func:`seed_folders`: the summary may be moved to a results folder).
    """
    import dataclasses

    from mmvideos.data.atomic import write_json
    from mmvideos.training.determinism import run_pinned
    from mmvideos.training.loop import launch

    if cfg.deterministic and cfg.num_nodes == 1:  # kernels pinned before torch loads: a fresh process
        launch = run_pinned
    if cfg.seeds == 1:
        return launch(features_dir, out_dir, cfg, resume_from=resume_from(cfg), **kwargs)
    per_seed = {}
    for seed in cfg.seed_list:
        one = dataclasses.replace(cfg, seed=seed, seeds=1)
        per_seed[str(seed)] = launch(features_dir, Path(out_dir) / SEED_FOLDER.format(seed=seed), one,
                                     resume_from=resume_from(one), **kwargs)
    summary = {"model": cfg.model, "seeds": cfg.seed_list, "per_seed": per_seed}
    write_json(summary, Path(out_dir) / "summary.json")
    write_json({"seeds": cfg.seed_list}, Path(out_dir) / SEEDS)
    return summary


def seed_folders(checkpoint_dir: str) -> dict[int | None, str]:
    """``{seed: folder}`` of the models in a pretrain output: itself (its seed from ``model.json``, if recorded),
    or the ``seed-<seed>/`` folders its ``seeds.json`` lists when it holds several."""
    import json

    if storage.exists(storage.join(checkpoint_dir, "model.json")):
        with storage.local_copy(storage.join(checkpoint_dir, "model.json")) as path:
            return {json.loads(Path(path).read_text()).get("seed"): checkpoint_dir}
    listed = storage.join(checkpoint_dir, SEEDS)
    seeds = []
    if storage.exists(listed):
        with storage.local_copy(listed) as path:
            seeds = json.loads(Path(path).read_text()).get("seeds") or []
    if not seeds:
        raise FileNotFoundError(f"{checkpoint_dir} holds no model.json, nor a {SEEDS} listing seed-<seed>/ "
                                "models: give a pretrain output folder")
    return {seed: storage.join(checkpoint_dir, SEED_FOLDER.format(seed=seed)) for seed in seeds}
