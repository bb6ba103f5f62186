"""The cluster side: running the one DAG locally and on Kubeflow.

``local_run`` (the whole pipeline on ``kfp.local``), ``placement`` (each task's resources,
retries and node pool, from ``params.yaml``), ``kfp_io`` (what a component writes for the KFP
UI), ``trainjob`` (multi-node pretraining as a Kubeflow Trainer ``TrainJob``) and ``schedule``
(submit, upload and recurring runs through the KFP API).
"""
