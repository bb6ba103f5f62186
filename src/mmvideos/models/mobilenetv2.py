"""MobileNetV2 (Sandler et al. 2018) for 1-channel log-mel input.

The architecture is the paper's ``t, c, n, s`` table (:data:`MOBILENETV2_SETTINGS`) with width
multiplier 1.0 by default. Audio adaptations, as for ResNet-50: a 1-channel stem, and the stem
stride lowered from 2 to 1 (the paper's "stride decreased by half"), so the total stride is 16
and a 100x64 input ends in a 7x4 map instead of 4x2. Then the 1x1 conv to 1,280 channels,
global average pooling, the 128-d embedding (FC + ReLU) and the classifier.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from mmvideos.models.tagger import EMBEDDING_DIM, AudioTagger, pooled_embedding, scaled

#: (t expansion, c output channels, n repeats, s stride of the first repeat), from the paper.
MOBILENETV2_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32
STEM_STRIDE = 1  # 2 on ImageNet; see the module docstring
LAST_CHANNELS = 1280


def conv_norm_relu6(in_ch: int, out_ch: int, kernel: int, stride: int, groups: int,
                    norm_layer: Callable[[int], nn.Module]) -> nn.Sequential:
    """Conv -> norm -> ReLU6."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                         norm_layer(out_ch), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """1x1 expand (x t) -> 3x3 depthwise (strided) -> 1x1 linear projection; residual when shapes match."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand: int,
                 norm_layer: Callable[[int], nn.Module]) -> None:
        super().__init__()
        hidden = in_ch * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(conv_norm_relu6(in_ch, hidden, 1, 1, 1, norm_layer))
        layers += [conv_norm_relu6(hidden, hidden, 3, stride, hidden, norm_layer),
                   nn.Conv2d(hidden, out_ch, 1, bias=False), norm_layer(out_ch)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x) if self.residual else self.body(x)


def mobilenetv2_backbone(width_mult: float = 1.0,
                         norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d) -> tuple[nn.Sequential, int]:
    """Stem + inverted-residual stages + 1x1 conv: ``[B, 1, T, F]`` -> ``[B, 1280, T/16, F/16]``."""
    in_ch = scaled(STEM_CHANNELS, width_mult)
    layers: list[nn.Module] = [conv_norm_relu6(1, in_ch, 3, STEM_STRIDE, 1, norm_layer)]
    for t, c, n, s in MOBILENETV2_SETTINGS:
        out_ch = scaled(c, width_mult)
        for i in range(n):
            layers.append(InvertedResidual(in_ch, out_ch, s if i == 0 else 1, t, norm_layer))
            in_ch = out_ch
    # As in the paper, the last conv is never made narrower than 1,280 (only wider for width > 1).
    last = scaled(LAST_CHANNELS, max(1.0, width_mult))
    layers.append(conv_norm_relu6(in_ch, last, 1, 1, 1, norm_layer))
    return nn.Sequential(*layers), last


def mobilenetv2(num_classes: int, width_mult: float = 1.0,
                norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d) -> AudioTagger:
    """Build MobileNetV2 for log-mel input.

    Args:
        num_classes: vocabulary size.
        width_mult: the paper's width multiplier (1.0 in our paper).
        norm_layer: the normalisation after each convolution.

    Raises:
        ValueError: non-positive width.
    """
    backbone, channels = mobilenetv2_backbone(width_mult, norm_layer)
    config = {"name": "mobilenetv2", "num_classes": num_classes, "width_mult": width_mult}
    return AudioTagger(backbone, pooled_embedding(channels), num_classes, EMBEDDING_DIM, config)
