"""Clip components: one task per shard (fold range), then a gather into one clip Dataset."""

from typing import List

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Output

from mmvideos.components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def clip_shard(videos: Input[Dataset], params: dict, ingest_params: dict, shard_index: int,
               compiled_num_shards: int, clips: Output[Dataset]):
    """Cut the videos of one fold range into 3-5 s clips: 16 kHz audio, 3 fps frames.

    ``compiled_num_shards`` is the number of clip tasks in the compiled DAG; a run whose
    ``clip.num_shards`` differs is refused (its fold ranges would not match the tasks).
    """
    from mmvideos.clip import ClipConfig, clip_videos
    from mmvideos.config import check_compiled, from_dict
    from mmvideos.ingest import IngestConfig, read_videos
    from mmvideos.kfp_io import attach

    cfg = from_dict(ClipConfig, params)
    check_compiled("clip.num_shards", cfg.num_shards, compiled_num_shards)
    num_folds = from_dict(IngestConfig, ingest_params).num_folds
    summary = clip_videos(read_videos(videos.path), clips.path, cfg,
                          num_folds=num_folds, shard_index=shard_index, progress=True)
    attach(clips, summary)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def gather_clips(shards: Input[List[Dataset]], clips: Output[Dataset], report: Output[Markdown]):
    """Merge the per-shard clip folders into one clip Dataset."""
    from mmvideos.clip import gather
    from mmvideos.kfp_io import finish

    summary = gather([s.path for s in shards], clips.path)
    finish(clips, report, "Clip", summary, tables={"Rejected while clipping": f"{clips.path}/rejects.parquet"})
