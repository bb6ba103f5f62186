"""Ingest components: list the source (never cached), probe it in task slots, gather the tables."""

from typing import List

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Output

from mmvideos.components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def list_source(source: str, data_root: str) -> str:
    """Store the source's listing (uri, size, mtime or GCS generation) in the data root and
    return its SHA-256; no video is read.

    The pipeline turns caching off for this step only: the probes take its result as an input,
    so a run probes again exactly when videos were added, removed or changed.
    """
    from mmvideos.corpus import resolve_source
    from mmvideos.dataroot import DataRoot
    from mmvideos.ingest import list_source as run

    return run(resolve_source(source), DataRoot(data_root))


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def probe(data_root: str, fingerprint: str, slot: int, slots: int, probes: Output[Dataset]):
    """Probe this slot's share of the listing; files probed by an earlier run are looked up."""
    from mmvideos.dataroot import DataRoot
    from mmvideos.ingest import probe_listing
    from mmvideos.kfp_io import attach

    attach(probes, probe_listing(DataRoot(data_root), fingerprint, probes.path, slot, slots, progress=True))


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def gather_ingest(parts: Input[List[Dataset]], data_root: str, params: dict, videos: Output[Dataset],
                  report: Output[Markdown]):
    """The probes -> videos.parquet (kept, with content id, fold, split) and rejects.parquet."""
    from mmvideos.config import from_dict
    from mmvideos.dataroot import DataRoot
    from mmvideos.ingest import IngestConfig, gather_probes
    from mmvideos.kfp_io import finish

    summary = gather_probes([p.path for p in parts], videos.path, from_dict(IngestConfig, params), DataRoot(data_root))
    finish(videos, report, "Ingest", summary, tables={"Rejected inputs": f"{videos.path}/rejects.parquet"})
