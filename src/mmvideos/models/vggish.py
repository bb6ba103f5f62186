"""The VGGish family: VGGish (Hershey et al. 2017), + batch norm, + fully convolutional (Table 1).

The three variants are rows of :data:`VGGISH_VARIANTS`, not separate classes; the paper's
ablation (Table 2) adds the changes cumulatively in this order:

=============  ==================  ==========================================================
variant        conv blocks         head after the 4th pool (6x4x512 map for a 100x64 input)
=============  ==================  ==========================================================
``vggish``     conv, ReLU          flatten, FC 4096, FC 4096, FC 128 (embedding), ReLU each
``vggish_bn``  conv, ReLU, BN      the same
``vggish_fc``  conv, ReLU, BN      conv 6x4x4096, conv 1x1x4096, conv 1x1x128, each + ReLU, BN
=============  ==================  ==========================================================

Then every variant has the classifier FC 128 -> vocabulary (Table 1's "Fully-connected-10998";
its sigmoid lives in the loss). Batch norm comes *after* the activation, as the paper says
("batch normalization is added after each activation layer").

Input size: the original VGGish takes 96x64 patches; here the input is 100x64. Four 2x2
max-pools (floor) map 100x64 -> 50x32 -> 25x16 -> 12x8 -> 6x4, so the 6x4 map the paper asks
for comes out with the original strides and no stride needs changing. The head's first layer
spans the whole final map, whatever the input size, so ``input_size`` is a constructor argument.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from mmvideos.models.tagger import EMBEDDING_DIM, INPUT_SHAPE, AudioTagger, scaled

#: Convolution stages, each a tuple of 3x3 conv widths followed by one 2x2 max-pool.
VGGISH_STAGES: tuple[tuple[int, ...], ...] = ((64,), (128,), (256, 256), (512, 512))
#: Hidden layers of the head between the last pool and the 128-d embedding.
VGGISH_HEAD: tuple[int, ...] = (4096, 4096)


@dataclasses.dataclass(frozen=True)
class VGGishSpec:
    """One VGGish variant.

    Attributes:
        batch_norm: a norm layer after each ReLU of the conv stages (and of a convolutional head).
        fully_convolutional: the head is convolutions (Table 1) instead of flatten + FC layers.
    """

    batch_norm: bool
    fully_convolutional: bool


VGGISH_VARIANTS: dict[str, VGGishSpec] = {
    "vggish": VGGishSpec(batch_norm=False, fully_convolutional=False),
    "vggish_bn": VGGishSpec(batch_norm=True, fully_convolutional=False),
    "vggish_fc": VGGishSpec(batch_norm=True, fully_convolutional=True),
}


class WholeMapConv2d(nn.Conv2d):
    """A convolution whose kernel spans its whole input map (Table 1's head convs), computed as
    the linear layer it is: ``[B, C, h, w]`` -> ``[B, out, 1, 1]``.

    One output position, so the convolution is ``F.linear`` of the flattened map with the
    flattened kernel (``[out, C, h, w]`` -> ``[out, C*h*w]``, the same ``C, h, w`` order); a
    matrix product is about 1.3x faster than the convolution kernel per CPU training step. The
    parameters (and so checkpoints and ``model.safetensors``) are the ``nn.Conv2d``'s; an input
    of another size falls back to the convolution.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.kernel_size or self.padding != (0, 0) or self.groups != 1:
            return super().forward(x)
        return F.linear(x.flatten(1), self.weight.flatten(1), self.bias)[:, :, None, None]


def conv_relu_norm(in_ch: int, out_ch: int, kernel: int | tuple[int, int], padding: int,
                   norm_layer: Callable[[int], nn.Module] | None, conv: type[nn.Conv2d] = nn.Conv2d) -> nn.Sequential:
    """Conv -> ReLU -> optional norm: one "Convolution with BN" row of Table 1."""
    layers: list[nn.Module] = [conv(in_ch, out_ch, kernel, padding=padding), nn.ReLU(inplace=True)]
    if norm_layer is not None:
        layers.append(norm_layer(out_ch))
    return nn.Sequential(*layers)


def vggish_backbone(width_mult: float = 1.0,
                    norm_layer: Callable[[int], nn.Module] | None = None) -> tuple[nn.Sequential, int]:
    """The four conv stages: ``[B, 1, T, F]`` -> ``[B, C, T // 16, F // 16]``; returns (module, C)."""
    layers: list[nn.Module] = []
    in_ch = 1
    for stage in VGGISH_STAGES:
        for width in stage:
            out_ch = scaled(width, width_mult)
            layers.append(conv_relu_norm(in_ch, out_ch, 3, 1, norm_layer))
            in_ch = out_ch
        layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers), in_ch


def vggish_head(in_ch: int, map_size: tuple[int, int], spec: VGGishSpec, width_mult: float,
                norm_layer: Callable[[int], nn.Module] | None) -> nn.Sequential:
    """Final map ``[B, in_ch, h, w]`` -> embedding ``[B, 128]`` (hidden layers, then embedding)."""
    widths = [scaled(w, width_mult) for w in VGGISH_HEAD] + [EMBEDDING_DIM]
    layers: list[nn.Module] = []
    if spec.fully_convolutional:
        # The first conv spans the whole map (6x4 -> 1x1); the rest are 1x1 convs on the 1x1 map.
        # Each spans its whole input, so each runs as a matrix product (WholeMapConv2d).
        kernel: tuple[int, int] = map_size
        for width in widths:
            layers.append(conv_relu_norm(in_ch, width, kernel, 0, norm_layer, WholeMapConv2d))
            in_ch, kernel = width, (1, 1)
        layers.append(nn.Flatten())  # [B, 128, 1, 1] -> [B, 128]
    else:
        layers.append(nn.Flatten())  # [B, C, h, w] -> [B, C*h*w]
        in_features = in_ch * map_size[0] * map_size[1]
        for width in widths:
            layers += [nn.Linear(in_features, width), nn.ReLU(inplace=True)]
            in_features = width
    return nn.Sequential(*layers)


def vggish(num_classes: int, variant: str = "vggish_fc", width_mult: float = 1.0,
           input_size: tuple[int, int] = INPUT_SHAPE,
           norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d) -> AudioTagger:
    """Build a VGGish variant (module docstring).

    Args:
        num_classes: vocabulary size (outputs of the classifier).
        variant: a key of :data:`VGGISH_VARIANTS`.
        width_mult: scales every conv and hidden width (not the 128-d embedding); 1.0 is the paper.
        input_size: ``(time frames, mel bins)`` of the input; sets the head's first kernel.
        norm_layer: the norm used where the variant has batch norm.

    Raises:
        ValueError: unknown variant, non-positive width or an input too small for four pools.
    """
    if variant not in VGGISH_VARIANTS:
        raise ValueError(f"unknown VGGish variant {variant!r}; known: {sorted(VGGISH_VARIANTS)}")
    spec = VGGISH_VARIANTS[variant]
    pools = 2 ** len(VGGISH_STAGES)
    map_size = (input_size[0] // pools, input_size[1] // pools)
    if min(map_size) < 1:
        raise ValueError(f"input {input_size} is too small for {len(VGGISH_STAGES)} 2x2 pools")
    norm = norm_layer if spec.batch_norm else None
    backbone, channels = vggish_backbone(width_mult, norm)
    head = vggish_head(channels, map_size, spec, width_mult, norm)
    config = {"name": variant, "num_classes": num_classes, "width_mult": width_mult}
    return AudioTagger(backbone, head, num_classes, EMBEDDING_DIM, config)
