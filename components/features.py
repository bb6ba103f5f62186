"""Feature component: clip audio -> 100x64 log-mel per second, sharded with the labels."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Output

from mmvideos.components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def extract_features(clips: Input[Dataset], labels: Input[Dataset], params: dict,
                     features: Output[Dataset], report: Output[Markdown]):
    """Log-mel features (paper preset) in float16 shards with each clip's label indices."""
    from mmvideos.config import from_dict
    from mmvideos.features.extract import FeatureConfig, extract_features as run
    from mmvideos.kfp_io import finish

    finish(features, report, "Features",
           run(clips.path, labels.path, features.path, from_dict(FeatureConfig, params), progress=True))
