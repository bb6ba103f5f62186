"""The shape every pre-training model shares: backbone -> 128-d embedding -> classifier.

A model is an :class:`AudioTagger` put together from three parts, so the five architectures
differ only in the backbone and embedding head they plug in:

* ``backbone``: log-mel ``[B, 1, 100, 64]`` -> feature map ``[B, C, h, w]``;
* ``embedding``: feature map -> ``[B, 128]``, the bottleneck the paper places before the output
  layer and the representation the transfer stage reads;
* ``classifier``: one linear layer ``128 -> num_classes`` giving logits. The sigmoid of Table 1
  lives in the loss (``BCEWithLogitsLoss``), which is numerically safer than a sigmoid here.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

#: Paper section 3: one non-overlapping 1-s frame is 100 STFT frames x 64 mel bins.
INPUT_SHAPE = (100, 64)
#: Paper section 3: "a bottleneck layer of 128 units placed before the final output layer".
EMBEDDING_DIM = 128


#: Initial sigmoid output of every label (see ``AudioTagger.__init__``).
LABEL_PRIOR = 0.01


class AudioTagger(nn.Module):
    """Multi-label audio classifier with a 128-d embedding before its output layer.

    Args:
        backbone: ``[B, 1, T, F]`` -> ``[B, C, h, w]``.
        embedding: ``[B, C, h, w]`` -> ``[B, embedding_dim]``.
        num_classes: size of the label vocabulary (10,998 in the paper).
        embedding_dim: width of the embedding ``embedding`` produces.
        config: the builder arguments, so a checkpoint can rebuild the model
            (``build_model(**model.config)``).
    """

    def __init__(self, backbone: nn.Module, embedding: nn.Module, num_classes: int,
                 embedding_dim: int = EMBEDDING_DIM, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.backbone = backbone
        self.embedding = embedding
        self.classifier = nn.Linear(embedding_dim, num_classes)
        self.num_classes = num_classes
        self.embedding_dim = embedding_dim
        self.config = dict(config or {})
        self.apply(init_weights)
        # Start the output layer at a small label prior instead of p = 0.5: with thousands of
        # mostly-absent labels, a zero bias spends the first epochs only learning that labels are
        # rare (the BCE sits near ln 2); a prior of 1% lets training go to the audio at once.
        nn.init.constant_(self.classifier.bias, -math.log((1 - LABEL_PRIOR) / LABEL_PRIOR))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Log-mel ``[B, 1, T, F]`` or ``[B, T, F]`` -> embedding ``[B, embedding_dim]``."""
        if x.dim() == 3:  # [B, T, F] -> [B, 1, T, F]
            x = x.unsqueeze(1)
        if x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"expected log-mel [B, 1, T, F] or [B, T, F], got {tuple(x.shape)}")
        return self.embedding(self.backbone(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log-mel ``[B, 1, T, F]`` or ``[B, T, F]`` -> logits ``[B, num_classes]`` (no sigmoid)."""
        return self.classifier(self.embed(x))


def init_weights(module: nn.Module) -> None:
    """He-normal convolutions, unit norms, small-normal linears (torchvision's scheme)."""
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
        if module.weight is not None:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, 0.0, 0.01)
        nn.init.zeros_(module.bias)


def pooled_embedding(in_ch: int) -> nn.Sequential:
    """``[B, C, h, w]`` -> global average -> FC -> ReLU -> ``[B, 128]``."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_ch, EMBEDDING_DIM),
                         nn.ReLU(inplace=True))


def scaled(channels: int, width_mult: float, divisor: int = 8) -> int:
    """``channels * width_mult`` rounded to a multiple of ``divisor`` (never below it, never
    more than 10% under the exact value), as MobileNet does for its width multiplier."""
    if width_mult <= 0 or not math.isfinite(width_mult):
        raise ValueError(f"width_mult must be a positive number, got {width_mult}")
    value = channels * width_mult
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded

