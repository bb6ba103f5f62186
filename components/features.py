"""Feature component: clip audio -> 100x64 log-mel per second, a map over slots."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from mmvideos.components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def extract_features(clips: Input[Dataset], labels: Input[Dataset], params: dict, data_root: str, slot: int,
                     slots: int, features: Output[Dataset]):
    """This slot's clips: log-mel features (paper preset) in float16 shards in the data root,
    indexed with each clip's label indices."""
    from mmvideos.cluster.kfp_io import attach
    from mmvideos.config import from_dict
    from mmvideos.data.dataroot import DataRoot
    from mmvideos.stages.features import FeatureConfig
    from mmvideos.stages.features import extract_features as run

    attach(features, run(clips.path, labels.path, features.path, DataRoot(data_root), from_dict(FeatureConfig, params),
                         slot, slots, progress=True))
