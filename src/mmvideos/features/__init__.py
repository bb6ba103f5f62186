"""The log-mel front end (the paper's 100x64 frames; YAMNet's and VGGish's presets) and the feature shards.

The ``features`` stage that writes them is :mod:`mmvideos.stages.features`; ``store`` reads them.

``log_mel(waveform, sample_rate, preset=...)`` in :mod:`mmvideos.features.logmel` is the public
front end. Importing this package loads no torch and no front end code, only the presets
(:mod:`mmvideos.features.presets`): code that needs the presets alone (the visual annotation
stage) does not depend on the front end (its units' keys follow their code, see
:mod:`mmvideos.data.dataroot`).
"""

from mmvideos.features.presets import PRESETS

__all__ = ["PRESETS"]
