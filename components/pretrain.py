"""Pretraining component: the audio CNN on the merged labels (GPU node pool on a cluster)."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from mmvideos.components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def pretrain(features: Input[Dataset], params: dict, data_root: str, arch: str, compiled_models: list,
             seed: str, compiled_seeds: list, model: Output[Model], metrics: Output[Metrics], curves: Output[HTML]):
    """Sigmoid cross-entropy over the vocabulary; Adam, lr 1e-4 x0.9 per epoch; val top-1 and mAP.

    ``arch`` is one of ``params["models"]`` and ``seed`` one of the seeds of ``pretrain.seeds`` (one task
    each pair); those lists must be the ``compiled_models`` and ``compiled_seeds`` the DAG has tasks for. One node (``num_nodes: 1``): trains here on
    every GPU the pod was given (one DDP process each under torchrun), else the CPU. More nodes:
    submits a Kubeflow Trainer TrainJob running the same entry point on ``num_nodes`` GPU pods,
    follows its log and fetches its model (:mod:`mmvideos.cluster.trainjob`). The checkpoint is kept in
    the data root after every epoch: a retried or preempted task (or TrainJob) resumes.
    """
    import dataclasses

    from mmvideos.cluster.kfp_io import attach, copy_page, log_metrics
    from mmvideos.cluster.placement import compiled_placement
    from mmvideos.config import check_compiled, model_names
    from mmvideos.data.dataroot import DataRoot
    from mmvideos.model_card import write_model_card
    from mmvideos.stages.pretrain import checkpoint_uri, pretrain_config, pretrain_seeds

    check_compiled("pretrain.models", model_names(params), list(compiled_models))
    cfg = pretrain_config(params, arch)
    check_compiled("pretrain.seed and pretrain.seeds", cfg.seed_list, list(compiled_seeds))
    cfg = dataclasses.replace(cfg, seed=int(seed), seeds=1)  # a loop item's field arrives as text
    placement = compiled_placement()
    if placement and placement["gpu"] and cfg.device == "auto":  # the pod asked for GPUs: none is an error
        cfg = dataclasses.replace(cfg, device="cuda")
    checkpoint = checkpoint_uri(DataRoot(data_root), features.path, cfg)
    if cfg.num_nodes > 1:
        from mmvideos.cluster.trainjob import pretrain_on_trainjob

        summary = pretrain_on_trainjob(features.uri, model.path, cfg, checkpoint, placement, data_root=data_root)
    else:
        summary = pretrain_seeds(features.path, model.path, cfg, progress=True, resume_from=lambda _: checkpoint,
                                 data_root=data_root)
    if summary.get("val_note"):  # figures of a meaningless validation set: the note, not the figures
        summary = {**summary, "best_val_map": None,
                   "final": {k: v for k, v in summary["final"].items() if not k.startswith("val_")}}
    write_model_card(model.path, features.path)
    log_metrics(metrics, summary)
    attach(model, summary)
    copy_page(f"{model.path}/curves.html", curves.path)
