"""mmvideos: learn acoustic representations from machine-labelled video.

The stages of the pipeline are plain functions in this package (``mmvideos.stages.ingest``,
``mmvideos.stages.clip``, ...); ``mmvideos.components`` wraps them as Kubeflow components and
``mmvideos.pipelines`` chains those into one DAG.

The model a run trains is an audio encoder: ``mmvideos.load_encoder(path).embed(waveform,
sample_rate)`` gives one 128-d embedding per second of one's own audio (:mod:`mmvideos.encoder`;
``mmvideos embed`` on the command line, :mod:`mmvideos.hear` for the HEAR 2021 API).
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__", "load_encoder"]


def load_encoder(path, device: str = "cpu"):
    """The pretrained encoder of an exported model folder: see :func:`mmvideos.encoder.load_encoder`
    (imported here on first use: ``import mmvideos`` loads no torch)."""
    from mmvideos.encoder import load_encoder as load

    return load(path, device)
