"""Run the pipeline on KFP's local runner and summarise what it produced.

``kfp.local`` executes the very pipeline function that ``mmvideos compile`` turns into IR for a
cluster: each task runs as a subprocess of this Python (``SubprocessRunner(use_venv=False)``),
outputs land under ``<workdir>/outputs/<run>/<task>/<artifact>``, and the local cache under
``<workdir>/cache`` lets a re-run skip tasks whose inputs did not change. kfp.local honours each
task's compiled caching option, as a cluster does: the first step, which lists the source, runs
every time, and ingest re-runs only when that listing changed. Each run's full log goes to
``<workdir>/logs/<time>-<pid>.log`` (``<workdir>/run.log`` links to the newest); the terminal
shows one line per task as it starts ("task 7 of 17: annotate audio", the pipeline's display
names), the tasks' progress lines (at least every 15 s through a long step) and the final summary. A run holds
``<workdir>/.lock``: a second run on the same workdir is refused, and the ``latest`` links are
replaced atomically.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import sys
import threading
import time
import warnings
from pathlib import Path

import pandas as pd

from mmvideos.cluster.reaper import tasks_end_with_this_process
from mmvideos.cluster.pages import write_pages
from mmvideos.config import model_names
from mmvideos.training.config import pretrain_config
from mmvideos.data.dataroot import DataRoot
from mmvideos.data.runrecord import read_summary
from mmvideos.settings import load_params

_STARTED = re.compile(r"Executing task '([^']+)'")
_FINISHED = re.compile(r"Task '([^']+)' finished with status (\w+)")
_PROGRESS = re.compile(r"^\s*(\S.*?: +\d+%\|.*)$")  # mmvideos.progress lines from inside a task
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
#: Failures that are a verdict on the user's inputs, shown without the task's name.
_PLAIN = re.compile(r"^(?:[\w.]+\.)?NoUsableVideoError: (.*)")
_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b.*")


class _TaskLines(io.TextIOBase):
    """A stdout that logs everything to a file and echoes only the task status lines.

    kfp.local runs the iterations of a ``ParallelFor`` in threads, each printing its task's output
    here; file objects are not thread-safe (concurrent writes to one ``TextIOWrapper`` corrupted
    the log), so one lock serialises the writes.
    """

    def __init__(self, log: io.TextIOBase, echo: io.TextIOBase, names: dict[str, str] | None = None,
                 total: int | None = None) -> None:
        self._log, self._echo, self._pending = log, echo, ""
        self._lock = threading.Lock()
        self._names, self._total, self._started = names or {}, total, 0

    def write(self, text: str) -> int:
        with self._lock:
            self._write(text)
        return len(text)

    def _write(self, text: str) -> None:
        self._log.write(text)
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            line = _ANSI.sub("", line)
            shown = self._shown(line)
            if shown:
                self._echo.write(shown + "\n")
                self._echo.flush()

    def _shown(self, line: str) -> str:
        """What the terminal shows of a log line: a task starting ("task 7 of 17: annotate audio")
        or failing, named as the pipeline's display names say, and the tasks' progress lines."""
        progress, started, finished = _PROGRESS.match(line), _STARTED.search(line), _FINISHED.search(line)
        if progress:
            return f"    {progress.group(1)}"
        if started:
            self._started += 1
            of = f" of {self._total}" if self._total else ""
            return f"task {self._started}{of}: {self._names.get(started.group(1), started.group(1))}"
        if finished and finished.group(2) != "SUCCESS":
            return f"    {self._names.get(finished.group(1), finished.group(1))}: {finished.group(2)}"
        return ""

    def flush(self) -> None:
        with self._lock:
            self._log.flush()


def run_local(source: str | None, workdir: str | Path, params_path: str | Path | None = None,
              caching: bool = True, echo: io.TextIOBase | None = None,
              arguments: dict | None = None, data_root: str | Path | None = None) -> dict[str, Path]:
    """Execute the pipeline with ``kfp.local``; returns ``{output name: artifact folder}``.

    An output of several artifacts (``models``: one per pretraining task) is one entry each,
    ``models-<arch>``, or ``models-<arch>-seed-<seed>`` when an architecture is pre-trained with
    several seeds (``pretrain.seeds``).

    ``source`` None keeps the pipeline's default (``data.source`` in the parameter file);
    ``params_path`` None reads ./params.yaml, else the packaged copy. ``data_root`` None takes
    ``data.root`` of the parameter file (a relative folder is relative to the current
    directory). ``arguments`` override other pipeline parameters for this run, as the Kubeflow
    UI does (e.g. ``{"clip_params": {...}}``).
    """
    from kfp import local

    from mmvideos.pipelines.mmvideos_pipeline import build_pipeline

    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    # Tasks run `python3 -m kfp.dsl.executor_main` in subprocesses: make that this interpreter.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(workdir / "outputs"),
               raise_on_error=True, enable_caching=caching, cache_root=str(workdir / "cache"))
    params = load_params(params_path)
    pipeline = build_pipeline(params, on_cluster=False)
    root = DataRoot(data_root or (params.get("data") or {}).get("root") or workdir / "data-root")
    log_path = workdir / "logs" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    log_path.parent.mkdir(exist_ok=True)
    # tasks_end_with_this_process: a kill -9 of this run ends its tasks too (mmvideos.cluster.reaper)
    with _locked(workdir), tasks_end_with_this_process(), open(log_path, "a") as log, warnings.catch_warnings(), \
            _print_kept(), contextlib.redirect_stdout(_TaskLines(log, echo or sys.stdout, *_task_names(pipeline, params))):
        _replace_link(workdir / "run.log", log_path)  # the newest run's log
        # display names and resource requests are for the cluster; the local runner says so per task
        warnings.filterwarnings("ignore", message=".*no effect in the current local runner.*")
        # our image is a Python image with mmvideos installed: the same code runs here
        warnings.filterwarnings("ignore", message=".*custom or non-Python base image.*")
        try:
            task = pipeline(**{"data_root": root.uri, **(arguments or {})},
                            **({} if source is None else {"source": source}))
        except RuntimeError as exc:
            log.flush()
            excerpt = _failure(log_path)
            logging.getLogger(__name__).info("the failed task's traceback:\n%s", excerpt)
            cause = next((line for line in reversed(excerpt.splitlines()) if _EXCEPTION.match(line)), "")
            if _PLAIN.match(cause):  # a verdict on the inputs, not a crash: its words alone
                raise RuntimeError(f"{_PLAIN.match(cause).group(1)} (full log: {log_path})") from None
            first = _ANSI.sub("", str(exc)).strip().splitlines()[0] if str(exc).strip() else "a task failed"
            raise RuntimeError(f"{first.rstrip('.')}: {cause or 'see the log'} (full log: {log_path})") from None
        outputs = {}
        for name, artifact in task.outputs.items():
            if isinstance(artifact, list):  # one per task of a fan-out (models)
                outputs |= fanned_out(name, [Path(item.path) for item in artifact])
            else:
                outputs[name] = Path(artifact.path)
        _point_latest(workdir, outputs)
    return outputs


def fanned_out(name: str, folders: list[Path]) -> dict[str, Path]:
    """``{<name>-<model>: folder}`` for the artifacts of a fan-out (its index where a folder names
    no model), ``<name>-<model>-seed-<seed>`` where a model was trained with several seeds."""
    labelled = [(folder, str(_summary(folder).get("model", index))) for index, folder in enumerate(folders)]
    repeated = len({label for _, label in labelled}) < len(labelled)
    named = {}
    for folder, label in labelled:
        seed = _card(folder).get("seed") if repeated else None
        named[f"{name}-{label}" + ("" if seed is None else f"-seed-{seed}")] = folder
    return named


def _task_names(pipeline, params: dict) -> tuple[dict[str, str], int]:
    """``({KFP task name: display name}, tasks a run executes)``: the names the terminal shows
    (``gather-4`` is "gather features") and how many tasks there are, each loop's body counted
    once per item (task slots, models x seeds, models x seeds x benchmarks)."""
    spec = pipeline.pipeline_spec
    names = {key: task.task_info.name for dag in [spec.root.dag, *(c.dag for c in spec.components.values())]
             for key, task in dag.tasks.items() if not key.startswith("for-loop-")}
    slots = int(params["data"].get("slots") or 1)
    names_of = model_names(params["pretrain"])
    models = len(names_of) * len(pretrain_config(params["pretrain"], names_of[0]).seed_list)  # x seeds
    per_item = {"probe": slots, "clip-slot": slots, "annotate-visual": slots, "annotate-audio": slots,
                "extract-features": slots, "pretrain": models, "collect": models,
                "transfer": models * len(params.get("benchmarks") or {})}
    return names, sum(per_item.get(key, 1) for key in names)


@contextlib.contextmanager
def _print_kept():
    """Put ``builtins.print`` back as it was after the run: kfp.local swaps it for an indenting
    one around each task, and from the threads of a ``ParallelFor`` two swaps can interleave and
    leave the indenting one in place (later output of this process began with stray spaces)."""
    import builtins

    kept = builtins.print
    try:
        yield
    finally:
        builtins.print = kept


@contextlib.contextmanager
def _locked(workdir: Path):
    """Hold ``<workdir>/.lock`` for a run: a second ``mmvideos run`` on the same workdir is refused
    at once (its cache, ``latest`` links and logs would race with this one's)."""
    import fcntl

    with open(workdir / ".lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise RuntimeError(f"another mmvideos run is using {workdir} (pid {handle.read().strip() or '?'}); "
                               "wait for it to finish or give another --workdir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield


def _replace_link(link: Path, target: Path) -> None:
    """Point the symlink ``link`` at ``target`` atomically (a new link renamed over the old one)."""
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, link)


def _failure(log_path: Path, max_lines: int = 25) -> str:
    """The last traceback a task wrote to the run log, down to its exception line."""
    lines = [line.strip() for line in _ANSI.sub("", log_path.read_text()).splitlines()]
    start = max((i for i, line in enumerate(lines) if "Traceback (most recent call last)" in line), default=len(lines))
    excerpt = []
    for line in lines[start:]:
        if line:
            excerpt.append(line)
        if _EXCEPTION.match(line):
            break
    return "\n".join(excerpt[-max_lines:]) + f"\n(full log: {log_path})"


def _point_latest(workdir: Path, outputs: dict[str, Path]) -> None:
    """``<workdir>/latest/<output>`` -> the artifact folders of the last run."""
    latest = workdir / "latest"
    latest.mkdir(exist_ok=True)
    for name, path in outputs.items():
        _replace_link(latest / name, path)


def _summary(folder: Path) -> dict:
    return read_summary(folder)  # with the run's record: units reused and computed, seconds


def _card(folder: Path) -> dict:
    """An exported model's ``model.json`` (``{}`` where there is none)."""
    path = folder / "model.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def summarise(outputs: dict[str, Path], seconds: float, run: Path | None = None) -> str:
    """The one-screen summary printed at the end of ``mmvideos run``.

    ``run`` is this run's folder under ``<workdir>/outputs``: an output outside it came from
    kfp.local's cache (an earlier run computed it), and is said so rather than counted again.
    """
    ingest, clips = _summary(outputs["videos"]), _summary(outputs["clips"])
    rejected = ingest.get("videos_rejected", 0) + clips.get("videos_rejected", 0)
    hours = clips.get("audio_hours", 0)
    lines = [
        "mmvideos run finished",
        f"  videos   {ingest.get('inputs', 0)} found, {clips.get('videos_clipped', 0)} kept, {rejected} rejected"
        f" ({ingest.get('benchmark_overlaps', 0)} benchmark overlaps, {ingest.get('near_duplicates', 0)} near"
        f" duplicates)",
    ]
    lines += _reject_lines(outputs)
    lines.append(f"  clips    {clips.get('clips', 0)} clips, {hours * 3600:.0f} s of audio ({hours:.3f} h),"
                 f" {clips.get('frames', 0)} frames")
    cached = _cached(outputs, run)
    lines += _reuse_lines(outputs, cached)
    if "labels" in outputs:
        lines += _label_lines(outputs["labels"])
    if "drift" in outputs and outputs["drift"].is_file():
        lines.append(_drift_line(outputs["drift"]))
    if "features" in outputs:
        features = _summary(outputs["features"])
        lines.append(f"  features {features.get('clips', 0)} clips, {features.get('audio_seconds', 0):.0f} s"
                     f" as 100x64 log-mel frames ({features.get('shards', 0)} shards)")
    for name in sorted(n for n in outputs if n.startswith("models-")):
        lines += _model_lines(_summary(outputs[name]))
    if "results" in outputs and (outputs["results"] / "results.md").exists():
        lines += ["", *("  " + line for line in (outputs["results"] / "results.md").read_text().strip().splitlines()), ""]
    lines.append(f"  time     {seconds:.0f} s")
    lines += _output_lines(outputs, run, cached)
    return "\n".join(lines)


def _reject_lines(outputs: dict[str, Path], few: int = 5) -> list[str]:
    """The rejected inputs with their reasons: inline when few, else the tables that list them."""
    from mmvideos.stages.ingest import reasons_inline

    tables = [outputs[name] / "rejects.parquet" for name in ("videos", "clips")
              if (outputs[name] / "rejects.parquet").exists()]
    rejects = pd.concat([pd.read_parquet(t) for t in tables], ignore_index=True) if tables else pd.DataFrame()
    if rejects.empty:
        return []
    if len(rejects) <= few:
        return [f"  rejected {reasons_inline(rejects, few)}"]
    return [f"  rejected {reasons_inline(rejects, 3)} (every reason: {', '.join(map(str, tables))})"]


def _cached(outputs: dict[str, Path], run: Path | None) -> set[str]:
    """The outputs that kfp.local's cache handed over from an earlier run."""
    if run is None:
        return set()
    return {name for name, path in outputs.items() if run not in Path(path).parents}


def _drift_line(metrics: Path) -> str:
    """The label drift verdict, or why it was not computed (the reason its page gives)."""
    import html

    drift = json.loads(metrics.read_text())
    page = metrics.parent / "drift"
    if not drift.get("computed", 1):
        found = re.search(r"not computed</h1><p>(.*?)</p>", page.read_text()) if page.is_file() else None
        return f"  drift    not computed: {html.unescape(found.group(1)) if found else 'see its report'} ({page})"
    return (f"  drift    {drift['drifted_columns']:.0f} of {drift['columns']:.0f} label columns drifted"
            f" ({'dataset drift' if drift['dataset_drift'] else 'no dataset drift'}; report: {page})")


def _model_lines(model: dict) -> list[str]:
    final = model.get("final") or {}
    if final.get("val_top1") is None:
        val = final.get("val_note") or "no validation clips"
    elif final.get("val_note"):  # figures from a set too small or too uniform to mean anything
        val = f"validation not meaningful: {final['val_note']}"
    else:
        val = f"val top-1 {final['val_top1']:.1%}, val mAP {final['val_map']:.1%}"
    lines = [f"  pretrain {model.get('model')} x{model.get('width_mult')} on {model.get('train_clips', 0)} clips,"
             f" batch {model.get('batch_size')}, {model.get('epochs')} epochs, {model.get('num_classes')} labels: "
             f"loss {final.get('loss', float('nan')):.4f}, {val}"]
    if model.get("device"):
        lines.append(f"           trained on {model['device']} ({model.get('gpus', 0)} GPUs, device: {model.get('device_asked')})")
    if model.get("device_asked") == "auto" and model.get("device") == "cpu":
        lines.append("  note     pretrain found no GPU (device: auto) and trained on the CPU; on a cluster the "
                     "task asks for one and refuses to run without it")
    return lines


def _output_lines(outputs: dict[str, Path], run: Path | None, cached: set[str]) -> list[str]:
    """Where this run's outputs are; those taken from the cache stay in the earlier runs' folders."""
    first = Path(outputs["clips"]).parents[1]
    workdir = first.parents[1]
    pages = f"pages: {workdir / 'latest' / 'index.html'} (mmvideos open)"
    if run is None or not cached:
        return [f"  outputs  {run or first}  (also {workdir / 'latest'}; {pages})"]
    earlier = ", ".join(sorted({p.name for name in cached for p in Path(outputs[name]).parents
                                if p.parent == run.parent}))
    if len(cached) == len(outputs):
        return [f"  outputs  {workdir / 'latest'} -> run {earlier}: nothing changed, every output came from the "
                f"cache ({pages})"]
    return [f"  outputs  {workdir / 'latest'} ({pages}): {len(cached)} of {len(outputs)} outputs came from the "
            f"cache, computed by run {earlier}; the rest is in {run}"]


#: The map stages whose work the summary counts, by output name.
_MAPS = {"videos": "probe", "clips": "clip", "visual": "annotate visual", "audio": "annotate audio",
         "features": "features"}


def _reuse_lines(outputs: dict[str, Path], cached: set[str] = frozenset()) -> list[str]:
    """Per map stage: shards reused from the data root, shards and clips computed; a stage whose
    output came from kfp.local's cache did no work in this run."""
    cells, from_cache = [], [stage for name, stage in _MAPS.items() if name in cached]
    for name, stage in _MAPS.items():
        summary = _summary(outputs[name]) if name in outputs and name not in cached else {}
        if "shards_reused" in summary:
            computed = f"{summary['shards_computed']} computed"
            if name != "videos":
                computed += f" ({summary.get('clips_computed', 0)} clips)"
            cells.append(f"{stage} {summary['shards_reused']} reused, {computed}")
    if from_cache:
        cells.append(f"{', '.join(from_cache)}: nothing run, outputs from the cache")
    return [f"  reuse    {'; '.join(cells)}"] if cells else []


def _label_lines(folder: Path) -> list[str]:
    labels = _summary(folder)
    vocabulary = pd.read_parquet(folder / "vocabulary.parquet")
    top = vocabulary.sort_values("count", ascending=False, kind="stable")
    lines = [
        f"  labels   {labels.get('mean_labels_per_clip', 0):.1f} per clip ({labels.get('mean_visual_labels_per_clip', 0):.1f}"
        f" visual + {labels.get('mean_audio_labels_per_clip', 0):.1f} audio); vocabulary {labels.get('vocabulary_used', 0)}"
        f" of {labels.get('vocabulary_total', 0)} used ({labels.get('utilisation', 0):.1%})",
    ]
    for modality in ("visual", "audio"):
        names = top.loc[top["modality"] == modality].head(6)
        lines.append(f"           top {modality}: " + ", ".join(f"{n} ({c})" for n, c in zip(names["name"], names["count"])))
    return lines


def timed_run(source: str | None, workdir: str | Path, params_path: str | Path | None, caching: bool = True,
              data_root: str | Path | None = None) -> str:
    """``run_local`` then ``summarise``: what ``mmvideos run`` prints."""
    started = time.monotonic()
    runs = Path(workdir).resolve() / "outputs"
    before = set(runs.iterdir()) if runs.is_dir() else set()
    outputs = run_local(source, workdir, params_path, caching, data_root=data_root)
    new = sorted(set(runs.iterdir()) - before) if runs.is_dir() else []
    run = new[-1] if new else None
    text = summarise(outputs, time.monotonic() - started, run)
    write_pages(Path(workdir).resolve(), outputs, run, text)
    return text
