"""Clip components: one task per slot cuts its videos into clip shards in the data root."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from mmvideos.components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def clip_slot(videos: Input[Dataset], params: dict, data_root: str, slot: int, slots: int, clips: Output[Dataset]):
    """Cut this slot's videos into 3-5 s clips (16 kHz audio, 3 fps frames); videos clipped
    before with the same settings are found in the data root, not decoded again."""
    from mmvideos.cluster.kfp_io import attach
    from mmvideos.config import from_dict
    from mmvideos.data.dataroot import DataRoot
    from mmvideos.stages.clip import ClipConfig, clip_videos
    from mmvideos.stages.ingest import read_videos

    attach(clips, clip_videos(read_videos(videos.path), clips.path, from_dict(ClipConfig, params), DataRoot(data_root),
                              slot, slots, progress=True))
