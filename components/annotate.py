"""Annotation components: visual and audio annotators in parallel (each a map over slots), then label merging."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Output

from mmvideos.components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def annotate_visual(clips: Input[Dataset], params: dict, data_root: str, slot: int, slots: int,
                    labels: Output[Dataset]):
    """This slot's clips: frames at 3 fps -> image classifier -> clip mean -> top-10 visual labels.

    Scores of clip shards seen before by the same annotator are looked up, not recomputed.
    """
    from mmvideos.cluster.kfp_io import attach
    from mmvideos.config import from_dict
    from mmvideos.data.dataroot import DataRoot
    from mmvideos.stages.annotate import VisualConfig
    from mmvideos.stages.annotate import annotate_visual as run

    attach(labels, run(clips.path, labels.path, from_dict(VisualConfig, params), DataRoot(data_root), slot, slots))


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def annotate_audio(clips: Input[Dataset], params: dict, data_root: str, slot: int, slots: int,
                   labels: Output[Dataset]):
    """This slot's clips: 1-s segments -> AudioSet tagger -> clip mean -> top-5 above a threshold.

    A new ``top_k`` or ``threshold`` re-selects from the stored scores; no network runs.
    """
    from mmvideos.cluster.kfp_io import attach
    from mmvideos.config import from_dict
    from mmvideos.data.dataroot import DataRoot
    from mmvideos.stages.annotate import AudioConfig
    from mmvideos.stages.annotate import annotate_audio as run

    attach(labels, run(clips.path, labels.path, from_dict(AudioConfig, params), DataRoot(data_root), slot, slots))


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def merge_labels(clips: Input[Dataset], visual: Input[Dataset], audio: Input[Dataset], params: dict, data_root: str,
                 labels: Output[Dataset], statistics: Output[HTML], report: Output[Markdown], audit: Output[HTML]):
    """One multi-modal vocabulary and label table, with Fig. 2-style statistics and the label
    audit page (frames and sound of the clips behind the top labels)."""
    from mmvideos.cluster.kfp_io import attach, copy_page
    from mmvideos.config import from_dict
    from mmvideos.data.dataroot import DataRoot
    from mmvideos.stages.annotate import MergeConfig
    from mmvideos.stages.annotate import merge_labels as run
    from mmvideos.stages.label_audit import label_audit

    cfg = from_dict(MergeConfig, params)
    summary = run(clips.path, visual.path, audio.path, labels.path, cfg, progress=True)
    attach(labels, summary)
    copy_page(f"{labels.path}/stats.html", statistics.path)
    copy_page(f"{labels.path}/stats.md", report.path)
    label_audit(clips.path, labels.path, audit.path, top=min(12, cfg.top_categories), root=DataRoot(data_root))


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def label_drift(labels: Input[Dataset], params: dict, data_root: str, drift: Output[HTML], metrics: Output[Metrics]):
    """evidently drift report of the labels: against an earlier run's, else train vs val.

    With ``follow`` set (``mmvideos schedule`` sets it to the recurring run's name) the earlier run
    is the one that last published its labels under that name in the data root.
    """
    import tempfile

    from mmvideos.cluster.kfp_io import copy_page, log_metrics
    from mmvideos.config import from_dict
    from mmvideos.stages.drift import DriftConfig
    from mmvideos.stages.drift import label_drift as run

    with tempfile.TemporaryDirectory() as out:
        summary = run(labels.path, out, from_dict(DriftConfig, params), progress=True, root=data_root,
                      published=labels.uri)
        copy_page(f"{out}/drift.html", drift.path)
    if summary.get("explanation"):  # not computed (too few clips...): no verdict to show, only that
        log_metrics(metrics, {"computed": 0, "current_clips": summary.get("current_clips", 0)})
    else:
        log_metrics(metrics, {"computed": 1, "columns": summary.get("columns", 0),
                              "drifted_columns": summary.get("drifted_columns", 0),
                              "drifted_share": summary.get("drifted_share", 0.0),
                              "dataset_drift": float(bool(summary.get("dataset_drift")))})
