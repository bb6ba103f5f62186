"""mmvideos.features: the log-mel front end, the features stage and its reader.

``log_mel(waveform, sample_rate, preset=...)`` is the public front end
(:mod:`mmvideos.features.logmel`).
"""

from mmvideos.features.logmel import PRESETS, frames_per_second, log_mel

__all__ = ["PRESETS", "frames_per_second", "log_mel"]
