"""Ingest components: list the source (never cached), probe it in task slots, gather the tables."""

from typing import List

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Output

from mmvideos.components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def list_source(source: str, data_root: str, slots: int) -> List[str]:
    """Store the source's listing (uri, size, mtime or GCS generation) in the data root; no
    video is read. Returns one work order per probe slot: ``"<listing SHA-256>:<slot>"``.

    The pipeline turns caching off for this step only: the probes take its result as an input,
    so a run probes again exactly when videos were added, removed or changed. (The orders are
    the loop's items, rather than the fingerprint a loop input, because kfp.local hands a task
    output consumed inside a ParallelFor the loop item instead.)
    """
    from mmvideos.data.dataroot import DataRoot
    from mmvideos.demo.corpus import resolve_source
    from mmvideos.stages.ingest import list_source as run

    fingerprint = run(resolve_source(source), DataRoot(data_root))
    return [f"{fingerprint}:{slot}" for slot in range(slots)]


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def probe(data_root: str, order: str, slots: int, probes: Output[Dataset], params: dict = {}):
    """Probe one slot's share of the listing (``order``: ``"<fingerprint>:<slot>"``); files
    probed by an earlier run are looked up, not read. ``params`` (the ingest section) sets how
    much audio each probe fingerprints (``fingerprint.seconds``; default when left out)."""
    from mmvideos.cluster.kfp_io import attach
    from mmvideos.config import from_dict
    from mmvideos.data.dataroot import DataRoot
    from mmvideos.stages.ingest import IngestConfig, probe_listing

    fingerprint, slot = order.rsplit(":", 1)
    seconds = from_dict(IngestConfig, params).fingerprint.seconds
    attach(probes, probe_listing(DataRoot(data_root), fingerprint, probes.path, int(slot), slots, progress=True,
                                 audio_fingerprint_s=seconds))


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def gather_ingest(parts: Input[List[Dataset]], data_root: str, params: dict, videos: Output[Dataset],
                  report: Output[Markdown]):
    """The probes -> videos.parquet (kept, with content id, fold, split) and rejects.parquet."""
    from mmvideos.cluster.kfp_io import finish
    from mmvideos.config import from_dict
    from mmvideos.data.dataroot import DataRoot
    from mmvideos.stages.ingest import IngestConfig, gather_probes, require_usable

    summary = gather_probes([p.path for p in parts], videos.path, from_dict(IngestConfig, params), DataRoot(data_root))
    finish(videos, report, "Ingest", summary, tables={"Rejected inputs": f"{videos.path}/rejects.parquet"})
    require_usable(videos.path)  # nothing kept: the run ends here, with the reasons
