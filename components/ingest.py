"""Ingest component: source URI -> ``videos`` Dataset (videos.parquet + rejects.parquet)."""

from kfp import dsl
from kfp.dsl import Dataset, Markdown, Output

from mmvideos.components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def ingest(source: str, params: dict, videos: Output[Dataset], report: Output[Markdown]):
    """Probe every video of ``source`` (folder, gs:// prefix, URI list; empty: the demo corpus)."""
    from mmvideos.config import from_dict
    from mmvideos.corpus import resolve_source
    from mmvideos.ingest import IngestConfig, ingest as run
    from mmvideos.kfp_io import finish

    summary = run(resolve_source(source), videos.path, from_dict(IngestConfig, params), progress=True)
    finish(videos, report, "Ingest", summary, tables={"Rejected inputs": f"{videos.path}/rejects.parquet"})
