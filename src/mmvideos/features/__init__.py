"""The log-mel front end (the paper's 100x64 frames; YAMNet's and VGGish's presets) and the feature shards.

The ``features`` stage that writes them is :mod:`mmvideos.stages.features`; ``store`` reads them.

``log_mel(waveform, sample_rate, preset=...)`` is the public front end
(:mod:`mmvideos.features.logmel`). Importing this package loads no torch: ``log_mel`` and
``frames_per_second`` are imported on first use, the presets come from
:mod:`mmvideos.features.presets`.
"""

from mmvideos.features.presets import PRESETS

__all__ = ["PRESETS", "frames_per_second", "log_mel"]


def __getattr__(name: str):
    if name in ("frames_per_second", "log_mel"):
        from mmvideos.features import logmel

        return getattr(logmel, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
