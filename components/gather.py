"""The gather of every map stage: concatenate the slots' manifests and tables (no shard moves)."""

from typing import List

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Output

from mmvideos.components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def gather(parts: Input[List[Dataset]], stage: str, title: str, data_root: str, merged: Output[Dataset],
           report: Output[Markdown]):
    """One output of ``stage`` from its slots' outputs; the manifest is recorded in the data root."""
    from mmvideos.cluster.kfp_io import finish
    from mmvideos.data.dataroot import DataRoot
    from mmvideos.data.dataroot import gather as run

    summary = run([p.path for p in parts], merged.path, stage, DataRoot(data_root))
    finish(merged, report, title, summary, tables={"Rejected while clipping": f"{merged.path}/rejects.parquet"}
           if stage == "clip" else None)
