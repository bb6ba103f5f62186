"""Run the pipeline on KFP's local runner and summarise what it produced.

``kfp.local`` executes the very pipeline function that ``mmvideos compile`` turns into IR for a
cluster: each task runs as a subprocess of this Python (``SubprocessRunner(use_venv=False)``),
outputs land under ``<workdir>/outputs/<run>/<task>/<artifact>``, and the local cache under
``<workdir>/cache`` lets a re-run skip tasks whose inputs did not change.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

from mmvideos.config import load_params

log = logging.getLogger(__name__)


def run_local(source: str, workdir: str | Path, params_path: str | Path = "params.yaml",
              caching: bool = True) -> Path:
    """Execute the pipeline with ``kfp.local``; returns the run's output folder."""
    from kfp import local

    from mmvideos.pipelines.mmvideos_pipeline import build_pipeline

    workdir = Path(workdir).resolve()
    outputs = workdir / "outputs"
    outputs.mkdir(parents=True, exist_ok=True)
    # Tasks run `python3 -m kfp.dsl.executor_main` in subprocesses: make that this interpreter.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(outputs),
               raise_on_error=True, enable_caching=caching, cache_root=str(workdir / "cache"))
    before = set(outputs.iterdir())
    pipeline = build_pipeline(load_params(params_path))
    pipeline(source=source)
    (run_dir,) = set(outputs.iterdir()) - before
    latest = workdir / "latest"
    latest.unlink(missing_ok=True)
    latest.symlink_to(run_dir.relative_to(workdir))
    return run_dir


def _load(run_dir: Path, *parts: str) -> dict:
    path = run_dir.joinpath(*parts, "summary.json")
    return json.loads(path.read_text()) if path.exists() else {}


def summarise(run_dir: str | Path, seconds: float) -> str:
    """The one-screen summary printed at the end of ``mmvideos run``."""
    run_dir = Path(run_dir)
    ingest = _load(run_dir, "ingest", "videos")
    clips = _load(run_dir, "gather-clips", "clips")
    rejected = ingest.get("videos_rejected", 0) + clips.get("videos_rejected", 0)
    lines = [
        "mmvideos run finished",
        f"  videos      {ingest.get('inputs', 0)} found, {clips.get('videos_clipped', 0)} kept, {rejected} rejected"
        f" (reasons: {run_dir / 'ingest' / 'videos' / 'rejects.parquet'})",
        f"  clips       {clips.get('clips', 0)} clips, {clips.get('audio_hours', 0) * 3600:.0f} s of audio"
        f" ({clips.get('audio_hours', 0):.3f} h), {clips.get('frames', 0)} frames",
    ]
    lines += [
        f"  time        {seconds:.0f} s",
        f"  outputs     {run_dir}",
    ]
    return "\n".join(lines)


def timed_run(source: str, workdir: str | Path, params_path: str | Path, caching: bool = True) -> str:
    """``run_local`` then ``summarise``: what ``mmvideos run`` prints."""
    started = time.monotonic()
    run_dir = run_local(source, workdir, params_path, caching)
    return summarise(run_dir, time.monotonic() - started)
