"""The mmvideos DAG.

    fingerprint_source (never cached)
    -> ingest -> clip (one task per fold range) -> gather
           -> annotate_visual | annotate_audio (in parallel) -> merge_labels -> label_drift
                                                                          -> features
           -> pretrain (GPU node pool) -> transfer (one task per benchmark) -> report

``build_pipeline(params)`` returns the ``@dsl.pipeline`` function with every stage's section of
``params.yaml`` as a dict parameter whose default is that section, so the Kubeflow UI shows and
overrides them per run, and KFP's cache only re-runs the stages whose settings changed. The first
step lists the source on every run (its caching is off) and hands ingest a fingerprint of the
listing, so ingest and what follows re-run when videos were added or changed, and stay cached
when nothing did. Three things are fixed when the pipeline is compiled: the clip fan-out
(``clip.num_shards``), the benchmark fan-out (the names in ``benchmarks``) and the ``cluster``
section; the tasks refuse a run whose parameters disagree with the first two.
The same function runs under ``kfp.local`` (``mmvideos run``) and compiles to IR YAML
(``mmvideos compile``).
"""

from typing import NamedTuple

from kfp import dsl, kubernetes
from kfp.dsl import Dataset, Metrics, Model

from mmvideos.components.annotate import annotate_audio, annotate_visual, label_drift, merge_labels
from mmvideos.components.clip import clip_shard, gather_clips
from mmvideos.components.features import extract_features
from mmvideos.components.ingest import fingerprint_source, ingest
from mmvideos.components.pretrain import pretrain
from mmvideos.components.transfer import report, transfer

PIPELINE_NAME = "mmvideos"

Outputs = NamedTuple("Outputs", videos=Dataset, clips=Dataset, labels=Dataset, drift=Metrics, features=Dataset,
                     model=Model, results=Dataset)


#: The memory-backed volume mounted at /dev/shm on the pretrain pod (DataLoader workers pass
#: batches through shared memory; a container's default /dev/shm is 64 MiB).
SHM_VOLUME = "dshm"


def on_gpu_node_pool(task: dsl.PipelineTask, cluster: dict) -> dsl.PipelineTask:
    """Ask for accelerators and land on the GPU node pool (node selector + toleration).

    CPU and memory get limits as well as requests (``cpu_limit``/``memory_limit``, default: the
    requests), so a namespace LimitRange's smaller default limit cannot make the pod's request
    exceed its limit; /dev/shm is a memory-backed emptyDir, which counts against that memory
    limit. The local runner ignores these settings; a cluster schedules the pod by them.
    """
    task.set_accelerator_type(cluster["accelerator_type"]).set_accelerator_limit(int(cluster["accelerator_count"]))
    task.set_cpu_request(str(cluster["cpu_request"])).set_memory_request(str(cluster["memory_request"]))
    task.set_cpu_limit(str(cluster.get("cpu_limit") or cluster["cpu_request"]))
    task.set_memory_limit(str(cluster.get("memory_limit") or cluster["memory_request"]))
    kubernetes.add_node_selector(task, label_key=cluster["node_selector_key"], label_value=cluster["node_selector_value"])
    kubernetes.add_toleration(task, key=cluster["toleration_key"], operator="Exists", effect="NoSchedule")
    kubernetes.empty_dir_mount(task, volume_name=SHM_VOLUME, mount_path="/dev/shm", medium="Memory")
    return task


def parameter_default(section: dict) -> dict:
    """A ``params.yaml`` section as a dict parameter's default: keys set to ``null`` are left out.

    KFP refuses ``None`` inside a default; a key left out takes the stage dataclass's default,
    which is what ``null`` means in ``params.yaml`` (e.g. ``pretrain.batch_size``).
    """
    return {key: value for key, value in section.items() if value is not None}


def build_pipeline(params: dict):
    """The pipeline function for this ``params.yaml`` content (a ``{section: dict}``)."""
    shards = list(range(int(params["clip"]["num_shards"])))
    benchmark_names = list(params["benchmarks"])
    default = {name: parameter_default(section) for name, section in params.items()}
    # a benchmark's root left empty (null) is its default data, not a benchmark left out
    default["benchmarks"] = {name: root or "" for name, root in params["benchmarks"].items()}

    @dsl.pipeline(name=PIPELINE_NAME,
                  description="Cross-modal supervised learning of acoustic representations from "
                              "machine-labelled video (Jia et al.): ingest, clip, annotate, pretrain, transfer.")
    def mmvideos(
        source: str = params["data"]["source"] or "",
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
        listed = fingerprint_source(source=source).set_display_name("list source").set_caching_options(False)
        ingested = ingest(source=source, source_fingerprint=listed.output,
                          params=ingest_params).set_display_name("ingest")
        with dsl.ParallelFor(items=shards, parallelism=4) as shard:
            clipped = clip_shard(videos=ingested.outputs["videos"], params=clip_params, ingest_params=ingest_params,
                                 shard_index=shard, compiled_num_shards=len(shards)).set_display_name("clip")
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
            evaluated = transfer(benchmark=benchmark, data_roots=benchmarks, compiled_benchmarks=benchmark_names,
                                 model=trained.outputs["model"], params=transfer_params).set_display_name("transfer")
        results = report(results=dsl.Collected(evaluated.outputs["results"])).set_display_name("report")
        return Outputs(videos=ingested.outputs["videos"], clips=clip_set, labels=labels.outputs["labels"],
                       drift=drift.outputs["metrics"], features=features.outputs["features"], model=trained.outputs["model"],
                       results=results.outputs["table"])

    return mmvideos
