"""Ingest components: list the source (never cached), then probe it into the ``videos`` Dataset."""

from kfp import dsl
from kfp.dsl import Dataset, Markdown, Output

from mmvideos.components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def fingerprint_source(source: str) -> str:
    """SHA-256 over the source's listing (uri, size, mtime or GCS generation); nothing is read.

    The pipeline turns caching off for this step only: ingest takes its result as an input, so
    a run re-ingests exactly when videos were added, removed or changed.
    """
    from mmvideos.ingest import source_fingerprint

    return source_fingerprint(source)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def ingest(source: str, source_fingerprint: str, params: dict, videos: Output[Dataset], report: Output[Markdown]):
    """Probe every video of ``source`` (folder, gs:// prefix, URI list; empty: the demo corpus).

    Videos that are not ``gs://`` objects are copied into the Dataset (``media/``): the clip
    pods do not share this pod's disk. ``source_fingerprint`` is only part of the cache key.
    """
    from mmvideos.config import from_dict
    from mmvideos.corpus import resolve_source
    from mmvideos.ingest import IngestConfig, ingest as run
    from mmvideos.kfp_io import finish

    summary = run(resolve_source(source), videos.path, from_dict(IngestConfig, params), progress=True,
                  copy_media=True)
    finish(videos, report, "Ingest", {**summary, "source_fingerprint": source_fingerprint},
           tables={"Rejected inputs": f"{videos.path}/rejects.parquet"})
