"""The mmvideos DAG.

    list_source (never cached)
    -> probe (N task slots) -> gather_ingest
    -> clip (N slots) -> gather
       -> annotate_visual (N slots) -> gather  } in parallel
       -> annotate_audio (N slots) -> gather   }
       -> merge_labels -> label_drift
       -> features (N slots) -> gather
    -> pretrain (one task per model of pretrain.models and seed of pretrain.seeds, GPU node pool)
       -> transfer (one task per benchmark) -> collect
    -> report (one table: every model on every benchmark, the paper's figures beside ours)

Bulk data never passes through an artifact: every map task writes its shards to the data root
(``data_root``, a folder or ``gs://``) under content keys and hands on a manifest
(:mod:`mmvideos.data.dataroot`); a gather concatenates manifests. A map finds the units that exist
and computes only the missing ones, so a run over a few new videos, a new threshold or a new
annotator costs only the new work, across runs, compiled versions and DVC.

``build_pipeline(params)`` returns the ``@dsl.pipeline`` function with every stage's section of
``params.yaml`` as a dict parameter whose default is that section, so the Kubeflow UI shows and
overrides them per run. Fixed when the pipeline is compiled: the number of task slots of every
map (``data.slots``), the model and seed fan-out (``pretrain.models``, ``pretrain.seeds``), the benchmark fan-out (the names
in ``benchmarks``) and the ``cluster`` and ``resources`` sections (every task's pod size,
retries, time limit and node pool: :mod:`mmvideos.cluster.placement`); the pretrain and transfer tasks
refuse a run whose models or benchmark names disagree with the compiled ones.
The same function runs under ``kfp.local`` (``mmvideos run``) and compiles to IR YAML
(``mmvideos compile``).
"""

from typing import List, NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Metrics, Model

from mmvideos.cluster.placement import configure
from mmvideos.components.annotate import annotate_audio, annotate_visual, label_drift, merge_labels
from mmvideos.components.clip import clip_slot
from mmvideos.components.features import extract_features
from mmvideos.components.gather import gather
from mmvideos.components.ingest import gather_ingest, list_source, probe
from mmvideos.components.pretrain import pretrain
from mmvideos.components.transfer import collect, report, transfer
from mmvideos.config import model_names
from mmvideos.training.config import pretrain_config

PIPELINE_NAME = "mmvideos"

Outputs = NamedTuple("Outputs", videos=Dataset, clips=Dataset, labels=Dataset, visual=Dataset, audio=Dataset,
                     drift=Metrics, features=Dataset, models=List[Model], results=Dataset)


def parameter_default(section: dict) -> dict:
    """A ``params.yaml`` section as a dict parameter's default: keys set to ``null`` are left out.

    KFP refuses ``None`` inside a default; a key left out takes the stage dataclass's default,
    which is what ``null`` means in ``params.yaml`` (e.g. ``pretrain.batch_size``).
    """
    return {key: value for key, value in section.items() if value is not None}


def build_pipeline(params: dict, pipeline_root: str | None = None, on_cluster: bool = True):
    """The pipeline function for this ``params.yaml`` content (a ``{section: dict}``).

    ``pipeline_root`` (e.g. ``gs://bucket/pipeline-root``) is where a cluster keeps the run's
    artifacts; ``None`` leaves it to the ``kfp-launcher`` ConfigMap of the namespace. Every task
    gets its size, retries, time limit and node pool from the ``resources`` and ``cluster``
    sections (:func:`mmvideos.cluster.placement.configure`); ``on_cluster=False`` (``kfp.local``) skips them.
    """

    def placed(task: dsl.PipelineTask, stage: str, name: str) -> dsl.PipelineTask:
        return configure(task.set_display_name(name), stage, params, on_cluster)

    slots = int(params["data"].get("slots") or 1)
    if slots < 1:
        raise ValueError(f"data.slots must be at least 1, got {slots}")
    slot_items = list(range(slots))
    benchmark_names = list(params["benchmarks"])
    models = model_names(params["pretrain"])
    seeds = pretrain_config(params["pretrain"], models[0]).seed_list  # pretrain.seeds: a task per seed too
    runs = [{"arch": arch, "seed": seed} for arch in models for seed in seeds]
    default = {name: parameter_default(section) for name, section in params.items()}
    # a benchmark's root left empty (null) is its default data, not a benchmark left out
    default["benchmarks"] = {name: root or "" for name, root in params["benchmarks"].items()}

    @dsl.pipeline(name=PIPELINE_NAME, pipeline_root=pipeline_root,
                  description="Cross-modal supervised learning of acoustic representations from "
                              "machine-labelled video (Jia et al.): ingest, clip, annotate, pretrain, transfer.")
    def mmvideos(
        source: str = params["data"].get("source") or "",
        data_root: str = params["data"].get("root") or "",
        ingest_params: dict = default["ingest"],
        clip_params: dict = default["clip"],
        visual_params: dict = default["annotate_visual"],
        audio_params: dict = default["annotate_audio"],
        merge_params: dict = default["merge_labels"],
        drift_params: dict = default["label_drift"],
        feature_params: dict = default["features"],
        pretrain_params: dict = default["pretrain"],
        transfer_params: dict = default["transfer"],
        benchmarks: dict = default["benchmarks"],
    ) -> Outputs:
        listed = placed(list_source(source=source, data_root=data_root, slots=slots), "list_source", "list source")
        listed.set_caching_options(False)
        with dsl.ParallelFor(items=listed.output, parallelism=slots) as order:
            probed = placed(probe(data_root=data_root, order=order, slots=slots, params=ingest_params), "probe", "probe")
        ingested = placed(gather_ingest(parts=dsl.Collected(probed.outputs["probes"]), data_root=data_root,
                                        params=ingest_params), "ingest", "ingest")
        videos = ingested.outputs["videos"]
        with dsl.ParallelFor(items=slot_items, parallelism=slots) as slot:
            clipped = placed(clip_slot(videos=videos, params=clip_params, data_root=data_root, slot=slot, slots=slots),
                             "clip", "clip")
        clips = placed(gather(parts=dsl.Collected(clipped.outputs["clips"]), stage="clip", title="Clip",
                              data_root=data_root), "gather", "gather clips").outputs["merged"]
        with dsl.ParallelFor(items=slot_items, parallelism=slots) as slot:
            seen = placed(annotate_visual(clips=clips, params=visual_params, data_root=data_root, slot=slot,
                                          slots=slots), "annotate_visual", "annotate visual")
        visual = placed(gather(parts=dsl.Collected(seen.outputs["labels"]), stage="annotate_visual",
                               title="Visual annotation", data_root=data_root),
                        "gather", "gather visual labels").outputs["merged"]
        with dsl.ParallelFor(items=slot_items, parallelism=slots) as slot:
            heard = placed(annotate_audio(clips=clips, params=audio_params, data_root=data_root, slot=slot,
                                          slots=slots), "annotate_audio", "annotate audio")
        audio = placed(gather(parts=dsl.Collected(heard.outputs["labels"]), stage="annotate_audio",
                              title="Audio annotation", data_root=data_root),
                       "gather", "gather audio labels").outputs["merged"]
        labels = placed(merge_labels(clips=clips, visual=visual, audio=audio, params=merge_params,
                                     data_root=data_root), "merge_labels",
                        "merge labels")
        drift = placed(label_drift(labels=labels.outputs["labels"], params=drift_params, data_root=data_root),
                       "label_drift", "label drift")
        with dsl.ParallelFor(items=slot_items, parallelism=slots) as slot:
            extracted = placed(extract_features(clips=clips, labels=labels.outputs["labels"], params=feature_params,
                                                data_root=data_root, slot=slot, slots=slots), "features", "features")
        features = placed(gather(parts=dsl.Collected(extracted.outputs["features"]), stage="features", title="Features",
                                 data_root=data_root), "gather", "gather features").outputs["merged"]
        with dsl.ParallelFor(items=runs) as run:  # one task per architecture and seed
            trained = placed(pretrain(features=features, params=pretrain_params, data_root=data_root, arch=run.arch,
                                      compiled_models=models, seed=run.seed, compiled_seeds=seeds),
                             "pretrain", "pretrain")
            with dsl.ParallelFor(items=benchmark_names) as benchmark:
                evaluated = placed(transfer(benchmark=benchmark, data_roots=benchmarks,
                                            compiled_benchmarks=benchmark_names, model=trained.outputs["model"],
                                            params=transfer_params, first_seed=seeds[0]), "transfer", "transfer")
            per_model = placed(collect(results=dsl.Collected(evaluated.outputs["results"]), model=trained.outputs["model"]),
                               "report",
                               "collect results")
        results = placed(report(results=dsl.Collected(per_model.outputs["collected"])), "report", "report")
        return Outputs(videos=videos, clips=clips, labels=labels.outputs["labels"], visual=visual, audio=audio,
                       drift=drift.outputs["metrics"], features=features,
                       models=dsl.Collected(trained.outputs["model"]), results=results.outputs["table"])

    return mmvideos
