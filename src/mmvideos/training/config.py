"""The pre-training settings (``params.yaml: pretrain``) as a typed dataclass.

Kept apart from the training loop (:mod:`mmvideos.training.loop`) and free of torch, pandas and the
models' code, so validating ``params.yaml`` (every CLI command does) and building a TrainJob
(:mod:`mmvideos.cluster.trainjob`) do not pay for importing them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mmvideos import config as config_mod
from mmvideos.models import MODEL_NAMES

__all__ = ["PretrainConfig", "pretrain_config"]


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """Pre-training hyper-parameters; the defaults are the paper's (section 3).

    Attributes:
        model: architecture, one of ``mmvideos.models.MODEL_NAMES``.
        width_mult: channel-width multiplier (1.0 in the paper; smaller for quick runs).
        epochs: passes over the training clips ("about 30 epochs").
        batch_size: global batch over all ranks; ``None`` is the paper's 1,024, or 2,048 for
            MobileNetV2.
        lr: Adam's initial learning rate (1e-4).
        lr_decay: factor applied to the learning rate after every epoch (0.9).
        l2_penalty: the paper's "L2 regularization penalty" (1.0), multiplying ``l2_scale``.
        l2_scale: per-weight L2 coefficient (:mod:`mmvideos.training.loop`'s docstring: the penalty is
            ``l2_penalty * l2_scale * sum(w^2) / 2``).
        shuffle_buffer: records each data reader holds for its streaming shuffle.
        pack_mb: target size in MB of the training packs the per-video feature units are packed
            into at start-up (:mod:`mmvideos.stages.pack`): hundreds of MB suit object storage.
        val_clips: validate on the first this many validation clips (a "validation subset"),
            read once and kept in memory on rank 0; 0 for all, streamed at every validation.
        val_every: validate every this many epochs (and after the last).
        seed: seeds initialisation, sampling order and per-clip draws.
        seeds: how many models to pre-train, with seeds ``seed``, ``seed + 1``, ...: each is transferred, and
            the report gives mean ± sd over them (the paper's protocol: 3; the demo: 1).
        deterministic: pin what can be pinned for results that do not depend on the machine's kernels
            (:mod:`mmvideos.training.determinism`); slower.
        num_workers: data-loader worker processes per rank.
        device: ``auto`` (CUDA when available), ``cuda`` or ``cpu``.
        bf16: bfloat16 autocast on CUDA (ignored on CPU).
        channels_last: NHWC memory layout on CUDA, faster for convolutions under autocast.
        num_nodes: machines of the job; above 1 the pipeline submits a Kubeflow Trainer TrainJob
            (mmvideos.cluster.trainjob) that runs this entry point on every node.
    """

    model: str = "vggish_fc"
    width_mult: float = 1.0
    epochs: int = 30
    batch_size: int | None = None
    lr: float = 1e-4
    lr_decay: float = 0.9
    l2_penalty: float = 1.0
    l2_scale: float = 1e-8
    shuffle_buffer: int = 8192
    pack_mb: float = 512.0
    val_clips: int = 10000
    val_every: int = 1
    seed: int = 0
    seeds: int = 1
    deterministic: bool = False
    num_workers: int = 4
    device: str = "auto"
    bf16: bool = True
    channels_last: bool = True
    num_nodes: int = 1

    def __post_init__(self) -> None:
        if self.model not in MODEL_NAMES:
            raise ValueError(f"unknown model {self.model!r}; known: {', '.join(MODEL_NAMES)}")
        if self.device not in ("auto", "cuda", "cpu"):
            raise ValueError(f"device must be auto, cuda or cpu, got {self.device!r}")
        if self.epochs < 1 or self.val_every < 1 or self.num_nodes < 1 or self.seeds < 1 or (
                self.batch_size is not None and self.batch_size < 1):
            raise ValueError("epochs, val_every, num_nodes, seeds and batch_size must be positive")

    @property
    def seed_list(self) -> list[int]:
        """The seeds of the models to pre-train: ``seed``, ``seed + 1``, ... (``seeds`` of them)."""
        return [self.seed + k for k in range(self.seeds)]

    @property
    def global_batch(self) -> int:
        """The batch over all ranks: ``batch_size``, else the paper's per-model value."""
        if self.batch_size is not None:
            return self.batch_size
        return 2048 if self.model == "mobilenetv2" else 1024

    @property
    def weight_decay(self) -> float:
        """Adam's coupled ``weight_decay`` equal to the L2 term (:mod:`mmvideos.training.loop`'s docstring)."""
        return self.l2_penalty * self.l2_scale


def pretrain_config(section: dict[str, Any] | None, model: str | None = None) -> PretrainConfig:
    """The settings of one pretraining task: ``section`` (``params.yaml: pretrain``) for ``model``.

    ``model`` must be one of :func:`mmvideos.config.model_names`; ``None`` picks the only one, and is an error
    when the section lists several (``mmvideos pretrain --model`` chooses).
    """
    names = config_mod.model_names(section)
    if model is None:
        if len(names) > 1:
            raise ValueError(f"pretrain.models lists {len(names)} models ({', '.join(names)}): choose one "
                             f"(mmvideos pretrain --model NAME)")
        model = names[0]
    elif model not in names:
        raise ValueError(f"model {model!r} is not in pretrain.models {names}")
    values = {k: v for k, v in (section or {}).items() if k not in ("models", "model")}
    return config_mod.from_dict(PretrainConfig, values | {"model": model})
