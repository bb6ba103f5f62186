"""Pre-training architectures (paper section 3, Table 1): log-mel -> 128-d embedding -> logits.

VGGish, VGGish+BN, VGGish-FC, ResNet-50 and MobileNetV2, each
``log-mel [B, 1, 100, 64] -> 128-d embedding -> logits``.

Use :func:`build_model` (``MODEL_NAMES`` lists the names); every model is an
:class:`AudioTagger` with ``embed(x) -> [B, 128]`` and ``forward(x) -> logits [B, num_classes]``.

``MODEL_NAMES`` is plain data (:mod:`mmvideos.models.names`); the rest is imported on first use (PEP 562), so code that
only checks a name (``params.yaml`` validation, :mod:`mmvideos.training.config`) does not import
torch.
"""

from __future__ import annotations

from typing import Any

from mmvideos.models.names import MODEL_NAMES

__all__ = ["EMBEDDING_DIM", "INPUT_SHAPE", "MODEL_NAMES", "AudioTagger", "build_model", "count_flops", "model_table"]


def __getattr__(name: str) -> Any:
    if name in ("build_model", "count_flops", "model_table"):
        from mmvideos.models import registry

        return getattr(registry, name)
    if name in ("EMBEDDING_DIM", "INPUT_SHAPE", "AudioTagger"):
        from mmvideos.models import tagger

        return getattr(tagger, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
