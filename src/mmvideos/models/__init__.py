"""Pre-training architectures (paper section 3, Table 1): VGGish, VGGish+BN, VGGish-FC,
ResNet-50 and MobileNetV2, each ``log-mel [B, 1, 100, 64] -> 128-d embedding -> logits``.

Use :func:`build_model` (``MODEL_NAMES`` lists the names); every model is an
:class:`AudioTagger` with ``embed(x) -> [B, 128]`` and ``forward(x) -> logits [B, num_classes]``.
"""

from mmvideos.models.registry import MODEL_NAMES, build_model, count_flops, model_table
from mmvideos.models.tagger import EMBEDDING_DIM, INPUT_SHAPE, AudioTagger

__all__ = ["EMBEDDING_DIM", "INPUT_SHAPE", "MODEL_NAMES", "AudioTagger", "build_model", "count_flops", "model_table"]
