"""The mmvideos DAG: ingest -> clip (fan-out over fold ranges) -> gather -> ...

``build_pipeline(params)`` returns the ``@dsl.pipeline`` function with every stage's section of
``params.yaml`` as a dict parameter whose default is that section, so the Kubeflow UI shows and
overrides them per run, and KFP's cache only re-runs the stages whose settings changed.
The same function runs under ``kfp.local`` (``mmvideos run``) and compiles to IR YAML
(``mmvideos compile``).
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset

from mmvideos.components.clip import clip_shard, gather_clips
from mmvideos.components.ingest import ingest

PIPELINE_NAME = "mmvideos"


def build_pipeline(params: dict):
    """The pipeline function for this ``params.yaml`` content (a ``{section: dict}``)."""
    shards = list(range(int(params["clip"]["num_shards"])))

    @dsl.pipeline(name=PIPELINE_NAME,
                  description="Cross-modal supervised learning of acoustic representations from "
                              "machine-labelled video (Jia et al.): ingest, clip, annotate, pretrain, transfer.")
    def mmvideos(
        source: str = params["data"]["source"],
        ingest_params: dict = params["ingest"],
        clip_params: dict = params["clip"],
    ) -> NamedTuple("Outputs", videos=Dataset, clips=Dataset):
        ingested = ingest(source=source, params=ingest_params).set_display_name("ingest")
        with dsl.ParallelFor(items=shards, parallelism=4) as shard:
            clipped = clip_shard(videos=ingested.outputs["videos"], params=clip_params,
                                 ingest_params=ingest_params, shard_index=shard).set_display_name("clip")
        gathered = gather_clips(shards=dsl.Collected(clipped.outputs["clips"])).set_display_name("gather clips")
        outputs = NamedTuple("Outputs", videos=Dataset, clips=Dataset)
        return outputs(videos=ingested.outputs["videos"], clips=gathered.outputs["clips"])

    return mmvideos
