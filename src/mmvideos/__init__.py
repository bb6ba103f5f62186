"""mmvideos: learn acoustic representations from machine-labelled video.

The stages of the pipeline are plain functions in this package (``mmvideos.stages.ingest``,
``mmvideos.stages.clip``, ...); ``mmvideos.components`` wraps them as Kubeflow components and
``mmvideos.pipelines`` chains those into one DAG.
"""

__version__ = "0.1.0"
