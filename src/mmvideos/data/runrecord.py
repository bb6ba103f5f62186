"""A stage's summary split in two: what its result is, and how this run went.

A stage's output folder is tracked (DVC hashes it into ``dvc.lock``, KFP caches it), so its
``summary.json`` holds only what the inputs, settings and code decide. How the run went (wall
seconds, rates, the units it reused or computed) goes to ``run.json`` beside it, which the
project's ``.dvcignore`` leaves out of DVC's hashes, and to the log; the summary a stage returns
keeps both (the CLI prints it, a Kubeflow task logs it as its metadata). A forced re-run that
computes nothing new then leaves every tracked byte as it was.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from mmvideos.data import storage
from mmvideos.data.atomic import write_json

log = logging.getLogger(__name__)

SUMMARY, RUN = "summary.json", "run.json"
#: Summary keys about the run, not the result (besides every ``*_per_s`` rate).
RUN_KEYS = frozenset({"seconds", "shards_reused", "shards_computed", "clips_computed", "epochs_trained"})


def is_run_key(key: str) -> bool:
    """Whether a summary key says how the run went (wall time, a rate, reuse) rather than what it made."""
    return key in RUN_KEYS or key.endswith("_per_s")


def write_summary(summary: dict, out_dir: str | Path) -> dict:
    """Write the result part of ``summary`` to ``out_dir/summary.json`` and its run part to
    ``out_dir/run.json`` (and the log); returns ``summary`` whole."""
    out_dir = Path(out_dir)
    write_json({k: v for k, v in summary.items() if not is_run_key(k)}, out_dir / SUMMARY)
    run = {k: v for k, v in summary.items() if is_run_key(k)}
    if run:
        write_json(run, out_dir / RUN)
        log.info("%s: %s", out_dir.name, json.dumps(run, sort_keys=True))
    return summary


def read_summary(folder: str | Path) -> dict:
    """A stage folder's summary with its run record (``{}`` where it has neither)."""
    merged: dict = {}
    for name in (SUMMARY, RUN):
        uri = storage.join(folder, name)
        if storage.exists(uri):
            merged |= json.loads(storage.read_bytes(uri))
    return merged
