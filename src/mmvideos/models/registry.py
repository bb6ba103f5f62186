"""One entry point for the five pre-training architectures, and their size table."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from mmvideos.models.mobilenetv2 import mobilenetv2
from mmvideos.models.names import MODEL_NAMES
from mmvideos.models.resnet import resnet
from mmvideos.models.tagger import INPUT_SHAPE, AudioTagger
from mmvideos.models.vggish import vggish

#: name -> builder(num_classes, width_mult) for every architecture of the paper (``MODEL_NAMES``).
_BUILDERS: dict[str, Callable[..., AudioTagger]] = {
    "vggish": functools.partial(vggish, variant="vggish"),
    "vggish_bn": functools.partial(vggish, variant="vggish_bn"),
    "vggish_fc": functools.partial(vggish, variant="vggish_fc"),
    "resnet50": functools.partial(resnet, name="resnet50"),
    "mobilenetv2": mobilenetv2,
}
if tuple(_BUILDERS) != MODEL_NAMES:
    raise ImportError(f"mmvideos.models.MODEL_NAMES {MODEL_NAMES} does not list the registry's {tuple(_BUILDERS)}")


def build_model(name: str, num_classes: int, width_mult: float = 1.0) -> AudioTagger:
    """Build an architecture by name, freshly initialised.

    Args:
        name: one of :data:`MODEL_NAMES`.
        num_classes: vocabulary size (10,998 in the paper).
        width_mult: scales the channel widths (not the 128-d embedding); 1.0 is the paper's
            model, smaller values give quick CPU demos.

    Returns:
        An :class:`AudioTagger` whose ``config`` holds these arguments, so
        ``build_model(**model.config)`` rebuilds it (e.g. from a checkpoint).

    Raises:
        ValueError: unknown name, ``num_classes < 1`` or ``width_mult <= 0``.
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}")
    return _BUILDERS[name](num_classes=num_classes, width_mult=width_mult)


def count_flops(model: torch.nn.Module, input_shape: tuple[int, ...] = (1, 1, *INPUT_SHAPE)) -> int:
    """FLOPs of one forward pass at ``input_shape``, as ``FlopCounterMode`` counts them.

    ``FlopCounterMode`` counts convolutions and matrix products only, at 2 FLOPs per
    multiply-accumulate (so FLOPs = 2 x MACs); norms, activations and pooling are not counted.
    """
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(input_shape))
    model.train(was_training)
    return int(counter.get_total_flops())


def model_table(num_classes: int = 10998, width_mult: float = 1.0) -> pd.DataFrame:
    """Parameters and compute of every architecture for one 1x100x64 log-mel frame.

    Columns: ``model``, ``parameters``, ``params_m`` (millions), ``flops`` and ``gflops``
    (FLOPs, i.e. 2 per multiply-accumulate, convolutions and matrix products only; see
    :func:`count_flops`) and ``gmacs`` (= FLOPs / 2). The paper quotes 73.54 M parameters and
    "360.72 million FLOPs" for VGGish-FC (Table 1). Our parameter count matches (73.58 M with the
    batch-norm affine weights); the FLOPs do not under either convention (1.77 GFLOPs = 0.88
    GMACs at 100x64; the four 3x3 convs of the 256- and 512-channel stages alone are 0.69
    GMACs), so the paper's figure must count differently and we report what we measure.
    """
    rows = []
    for name in MODEL_NAMES:
        model = build_model(name, num_classes, width_mult)
        flops = count_flops(model)
        parameters = sum(p.numel() for p in model.parameters())
        rows.append({"model": name, "parameters": parameters, "params_m": round(parameters / 1e6, 2),
                     "flops": flops, "gflops": round(flops / 1e9, 3), "gmacs": round(flops / 2e9, 3)})
        del model
    return pd.DataFrame(rows)
