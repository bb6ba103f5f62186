"""The pipeline's stages, one module per stage in the order of the DAG, each owning its settings.

``ingest`` (probe, keep videos with sound and picture, rejects) -> ``clip`` (3-5 s clips, 16 kHz
audio, 3 fps frames) -> ``annotate`` (visual and audio annotation, label merging) -> ``drift``
(evidently report of the labels) -> ``features`` (100x64 log-mel shards) -> ``pretrain`` (the
audio CNNs) -> ``transfer`` (128-d embeddings on ESC-50, TUT 2018, AudioSet) -> ``report``.
Two modules serve one stage each: ``overlap`` is ingest's benchmark-leakage and near-duplicate
guard, ``label_stats`` the label statistics and plots that ``merge_labels`` writes.

Each stage is a plain function over folders and a :class:`~mmvideos.data.dataroot.DataRoot`,
with its config dataclass beside it (``IngestConfig``, ``ClipConfig``...); the thin Kubeflow
components of ``mmvideos.components``, the CLI and ``dvc.yaml`` all call these functions.
Their plumbing lives in :mod:`mmvideos.data` (storage, data root, shards) and
:mod:`mmvideos.cluster` (Kubeflow), their measurements in :mod:`mmvideos.bench`.
"""
