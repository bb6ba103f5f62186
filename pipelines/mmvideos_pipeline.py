"""The mmvideos DAG.

    ingest -> clip (one task per fold range) -> gather
           -> annotate_visual | annotate_audio (in parallel) -> merge_labels -> label_drift
                                                                          -> features
           -> pretrain (GPU node pool) -> transfer (one task per benchmark) -> report

``build_pipeline(params)`` returns the ``@dsl.pipeline`` function with every stage's section of
``params.yaml`` as a dict parameter whose default is that section, so the Kubeflow UI shows and
overrides them per run, and KFP's cache only re-runs the stages whose settings changed.
The same function runs under ``kfp.local`` (``mmvideos run``) and compiles to IR YAML
(``mmvideos compile``).
"""

from typing import NamedTuple

from kfp import dsl, kubernetes
from kfp.dsl import Dataset, Metrics, Model

from mmvideos.components.annotate import annotate_audio, annotate_visual, label_drift, merge_labels
from mmvideos.components.clip import clip_shard, gather_clips
from mmvideos.components.features import extract_features
from mmvideos.components.ingest import ingest
from mmvideos.components.pretrain import pretrain
from mmvideos.components.transfer import report, transfer

PIPELINE_NAME = "mmvideos"

Outputs = NamedTuple("Outputs", videos=Dataset, clips=Dataset, labels=Dataset, drift=Metrics, features=Dataset,
                     model=Model, results=Dataset)


def on_gpu_node_pool(task: dsl.PipelineTask, cluster: dict) -> dsl.PipelineTask:
    """Ask for accelerators and land on the GPU node pool (node selector + toleration).

    The local runner ignores these settings; a cluster schedules the pod by them.
    """
    task.set_accelerator_type(cluster["accelerator_type"]).set_accelerator_limit(int(cluster["accelerator_count"]))
    task.set_cpu_request(str(cluster["cpu_request"])).set_memory_request(str(cluster["memory_request"]))
    kubernetes.add_node_selector(task, label_key=cluster["node_selector_key"], label_value=cluster["node_selector_value"])
    kubernetes.add_toleration(task, key=cluster["toleration_key"], operator="Exists", effect="NoSchedule")
    return task


def build_pipeline(params: dict):
    """The pipeline function for this ``params.yaml`` content (a ``{section: dict}``)."""
    shards = list(range(int(params["clip"]["num_shards"])))
    benchmark_names = list(params["benchmarks"])

    @dsl.pipeline(name=PIPELINE_NAME,
                  description="Cross-modal supervised learning of acoustic representations from "
                              "machine-labelled video (Jia et al.): ingest, clip, annotate, pretrain, transfer.")
    def mmvideos(
        source: str = params["data"]["source"],
        ingest_params: dict = params["ingest"],
        clip_params: dict = params["clip"],
        visual_params: dict = params["annotate_visual"],
        audio_params: dict = params["annotate_audio"],
        merge_params: dict = params["merge_labels"],
        drift_params: dict = params["label_drift"],
        feature_params: dict = params["features"],
        pretrain_params: dict = params["pretrain"],
        transfer_params: dict = params["transfer"],
        benchmarks: dict = params["benchmarks"],
    ) -> Outputs:
        ingested = ingest(source=source, params=ingest_params).set_display_name("ingest")
        with dsl.ParallelFor(items=shards, parallelism=4) as shard:
            clipped = clip_shard(videos=ingested.outputs["videos"], params=clip_params,
                                 ingest_params=ingest_params, shard_index=shard).set_display_name("clip")
        clips = gather_clips(shards=dsl.Collected(clipped.outputs["clips"])).set_display_name("gather clips")
        clip_set = clips.outputs["clips"]
        visual = annotate_visual(clips=clip_set, params=visual_params).set_display_name("annotate visual")
        audio = annotate_audio(clips=clip_set, params=audio_params).set_display_name("annotate audio")
        labels = merge_labels(clips=clip_set, visual=visual.outputs["labels"], audio=audio.outputs["labels"],
                              params=merge_params).set_display_name("merge labels")
        drift = label_drift(labels=labels.outputs["labels"], params=drift_params).set_display_name("label drift")
        features = extract_features(clips=clip_set, labels=labels.outputs["labels"],
                                    params=feature_params).set_display_name("features")
        trained = on_gpu_node_pool(
            pretrain(features=features.outputs["features"], params=pretrain_params).set_display_name("pretrain"),
            params["cluster"])
        with dsl.ParallelFor(items=benchmark_names) as benchmark:
            evaluated = transfer(benchmark=benchmark, data_roots=benchmarks, model=trained.outputs["model"],
                                 params=transfer_params).set_display_name("transfer")
        results = report(results=dsl.Collected(evaluated.outputs["results"])).set_display_name("report")
        return Outputs(videos=ingested.outputs["videos"], clips=clip_set, labels=labels.outputs["labels"],
                       drift=drift.outputs["metrics"], features=features.outputs["features"], model=trained.outputs["model"],
                       results=results.outputs["table"])

    return mmvideos
