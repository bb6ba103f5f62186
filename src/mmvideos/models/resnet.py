"""ResNet with bottleneck blocks (He et al. 2016) for 1-channel log-mel input.

The architecture is data (:data:`RESNET_DEPTHS`: blocks per stage); the blocks follow
torchvision's ResNet v1.5 (stride on the 3x3 conv). Audio adaptations, as the paper's section 3
asks ("if necessary, the stride ... is decreased by half to guarantee an output feature map of
6x4"): the stem takes one channel, and it has no max-pool, which halves the total stride from 32
to 16 so a 100x64 input ends in a 7x4 map (4x2 with the ImageNet stem). Then global average
pooling, the 128-d embedding (FC + ReLU) and the classifier.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from mmvideos.models.tagger import EMBEDDING_DIM, AudioTagger, pooled_embedding, scaled

#: Bottleneck blocks per stage.
RESNET_DEPTHS: dict[str, tuple[int, int, int, int]] = {"resnet50": (3, 4, 6, 3)}
#: Inner (3x3) widths of the four stages; a bottleneck's output is ``EXPANSION`` times wider.
RESNET_WIDTHS = (64, 128, 256, 512)
#: The first stage keeps the stem's resolution, the others halve it.
RESNET_STRIDES = (1, 2, 2, 2)
EXPANSION = 4


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (strided) -> 1x1 expand, plus the (projected) identity; ReLU after the sum."""

    def __init__(self, in_ch: int, width: int, stride: int, norm_layer: Callable[[int], nn.Module]) -> None:
        super().__init__()
        out_ch = width * EXPANSION
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, width, 1, bias=False), norm_layer(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False), norm_layer(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, out_ch, 1, bias=False), norm_layer(out_ch),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), norm_layer(out_ch))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


def resnet_backbone(depths: tuple[int, ...], width_mult: float = 1.0,
                    norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d) -> tuple[nn.Sequential, int]:
    """Stem + bottleneck stages: ``[B, 1, T, F]`` -> ``[B, C, T/16, F/16]``; returns (module, C)."""
    if len(depths) != len(RESNET_WIDTHS) or any(int(d) < 1 for d in depths):
        raise ValueError(f"ResNet needs {len(RESNET_WIDTHS)} positive stage depths, got {depths}")
    stem_ch = scaled(64, width_mult)
    layers: list[nn.Module] = [nn.Sequential(
        nn.Conv2d(1, stem_ch, 7, stride=2, padding=3, bias=False), norm_layer(stem_ch), nn.ReLU(inplace=True))]
    in_ch = stem_ch
    for depth, width, stride in zip(depths, RESNET_WIDTHS, RESNET_STRIDES, strict=True):
        width = scaled(width, width_mult)
        blocks = []
        for i in range(depth):
            blocks.append(Bottleneck(in_ch, width, stride if i == 0 else 1, norm_layer))
            in_ch = width * EXPANSION
        layers.append(nn.Sequential(*blocks))
    return nn.Sequential(*layers), in_ch


def resnet(num_classes: int, name: str = "resnet50", width_mult: float = 1.0,
           norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d) -> AudioTagger:
    """Build a bottleneck ResNet for log-mel input.

    Args:
        num_classes: vocabulary size.
        name: a key of :data:`RESNET_DEPTHS`.
        width_mult: scales every stage width; 1.0 is ResNet-50.
        norm_layer: the normalisation after each convolution.

    Raises:
        ValueError: unknown name or non-positive width.
    """
    if name not in RESNET_DEPTHS:
        raise ValueError(f"unknown ResNet {name!r}; known: {sorted(RESNET_DEPTHS)}")
    backbone, channels = resnet_backbone(RESNET_DEPTHS[name], width_mult, norm_layer)
    config = {"name": name, "num_classes": num_classes, "width_mult": width_mult}
    return AudioTagger(backbone, pooled_embedding(channels), num_classes, EMBEDDING_DIM, config)
