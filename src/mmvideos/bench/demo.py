"""The ``demo`` part of ``mmvideos bench``: the whole demo run, warm, timed per task.

:func:`demo_run` runs ``mmvideos run`` as ``make run`` does, in a subprocess, with a fresh
temporary workdir and data root and a fresh cache folder that links the downloads and model files
of ``$MMVIDEOS_CACHE`` (the demo videos, the demo benchmark, the exported annotator graphs) but not
the embeddings earlier runs computed: nothing of an earlier run is reused, and nothing is fetched.
It times the command, then splits that time into the start-up before the first task, the tasks
(:func:`task_times`, from the run's log) and the summary after the last task.
"""

from __future__ import annotations

import datetime
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

#: What ``make run`` should take on the 2-core machine once the demo data is cached (the issue's target).
TARGET_S = 90
#: Cache entries a run derives from its own checkpoints, which the timed run must compute afresh.
DERIVED = ("embeddings",)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_EVENT = re.compile(r"^(\d\d):(\d\d):(\d\d(?:\.\d+)?) - \w+ - (?:Executing task '(?P<start>[^']+)'"
                    r"|Task '(?P<end>[^']+)' finished with status)")
_DAY = 86400.0


def task_times(log: str) -> dict[str, Any]:
    """Time each task of a ``kfp.local`` run log (``<workdir>/run.log``) from its lines
    ``hh:mm:ss.mmm - INFO - Executing task 'x'`` and ``... - Task 'x' finished with status ...``.

    kfp.local runs the iterations of a ``ParallelFor`` in threads, so a name may run several times,
    at once: starts and finishes pair by name, and which start a finish closes changes neither figure.
    Its threads also share the process's logging and ``print`` (kfp swaps ``builtins.print`` per
    task), and a finish line can go missing: a run of ``x`` left open is closed at the last
    logged finish of ``x`` after it, or else at the next line of the log, and counted in
    ``unlogged``.

    Returns:
        ``tasks``: per name ``count`` (runs), ``unlogged`` (runs whose finish was not logged),
        ``seconds`` (summed over its runs) and ``wall_s``
        (its share of the wall clock: each moment split equally among the tasks running then, so
        the shares add up to ``busy_s``, the time any task ran); ``first_start`` and ``last_end``
        in seconds since the midnight before the log's first line.
    """
    events, day, previous = [], 0.0, None
    for line in _ANSI.sub("", log).splitlines():
        match = _EVENT.match(line)
        if not match:
            continue
        at = int(match[1]) * 3600 + int(match[2]) * 60 + float(match[3]) + day
        if previous is not None and at < previous - _DAY / 2:  # past midnight
            day, at = day + _DAY, at + _DAY
        previous = at
        events.append((at, -1 if match["end"] else 1, match["start"] or match["end"]))
    if not events:
        raise ValueError("no task in the log")
    unlogged = _close_unlogged(events)
    events.sort()  # threads write their lines a little out of order; a finish sorts before a start at the same ms
    tasks: dict[str, dict[str, float]] = {}
    running: Counter[str] = Counter()
    last = events[0][0]
    for at, step, name in events:
        busy = sum(running.values())
        for other, count in running.items():
            tasks[other]["wall_s"] += (at - last) * count / busy
        row = tasks.setdefault(name, {"count": 0, "unlogged": unlogged[name], "seconds": 0.0, "wall_s": 0.0})
        row["count"] += step > 0
        row["seconds"] -= step * at  # minus its start, plus its finish
        running[name] += step
        if running[name] < 0:
            raise ValueError(f"task {name!r} finished more often than it started")
        if not running[name]:
            del running[name]
        last = at
    if running:
        raise ValueError(f"tasks started but never finished: {sorted(running)}")
    busy = sum(row["wall_s"] for row in tasks.values())
    return {"tasks": {name: {key: round(value, 3) for key, value in row.items()} for name, row in tasks.items()},
            "first_start": events[0][0], "last_end": events[-1][0], "busy_s": busy}


def _close_unlogged(events: list[tuple[float, int, str]]) -> Counter[str]:
    """Add a finish for each start of ``events`` that has none (:func:`task_times`); returns how
    many per name."""
    balance: Counter[str] = Counter()
    for _, step, name in events:
        balance[name] += step
    added: Counter[str] = Counter()
    for name, missing in balance.items():
        if missing <= 0:
            continue
        last_start = max(at for at, step, n in events if n == name and step > 0)
        finishes = [at for at, step, n in events if n == name and step < 0 and at >= last_start]
        later = [at for at, _, n in events if at > last_start]
        if not finishes and not later:
            raise ValueError(f"tasks started but never finished: [{name!r}]")
        events += [(max(finishes) if finishes else min(later), -1, name)] * missing
        added[name] = missing
    return added


def _time_of_day(seconds: float) -> float:
    """A ``time.time()`` as seconds since the local midnight before it (the log's clock)."""
    moment = datetime.datetime.fromtimestamp(seconds)
    return moment.hour * 3600 + moment.minute * 60 + moment.second + moment.microsecond / 1e6


def _linked_cache(folder: Path) -> list[str]:
    """Fill ``folder`` with links to the entries of the cache but :data:`DERIVED`; returns their names."""
    from mmvideos.data.files import cache_dir

    folder.mkdir(parents=True)
    cache = cache_dir()
    names = sorted(p.name for p in cache.iterdir() if p.name not in DERIVED) if cache.is_dir() else []
    for name in names:
        (folder / name).symlink_to(cache / name)
    return names


def demo_run(params: str | Path | None = None) -> dict[str, Any]:
    """Run and time the warm demo (module docstring); ``params`` as ``mmvideos run --params``.

    Returns:
        ``total_s`` (the command's wall clock), ``cpu_s`` (its processes' CPU time, which other
        tenants of the machine do not inflate), ``startup_s`` (before the first task), ``tasks_s``
        (first task's start to last task's end), ``between_s`` (of that, when no task ran),
        ``summary_s`` (after the last task), ``tasks`` (:func:`task_times`), ``target_s``,
        ``cache_linked`` (the cache entries reused).
    """
    with tempfile.TemporaryDirectory(prefix="mmvideos-demo-bench-") as tmp:
        cache = _linked_cache(Path(tmp) / "cache")
        env = {**os.environ, "MMVIDEOS_CACHE": str(Path(tmp) / "cache"),  # make run puts .venv/bin on the PATH
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        command = [sys.executable, "-m", "mmvideos.cli", *(["--params", str(params)] if params else []), "run",
                   "--workdir", str(Path(tmp) / "work"), "--data-root", str(Path(tmp) / "data-root")]
        cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        started, clock = time.time(), time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        total, ended = time.perf_counter() - clock, time.time()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
            raise RuntimeError(f"the demo run failed (exit {done.returncode}):\n{tail}")
        timed = task_times((Path(tmp) / "work" / "run.log").read_text())
    span = timed["last_end"] - timed["first_start"]
    return {"command": "mmvideos run", "target_s": TARGET_S, "total_s": total,
            "cpu_s": after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime,
            "startup_s": (timed["first_start"] - _time_of_day(started)) % _DAY, "tasks_s": span,
            "between_s": span - timed["busy_s"], "summary_s": (_time_of_day(ended) - timed["last_end"]) % _DAY,
            "tasks": timed["tasks"], "cache_linked": cache}


def markdown_lines(demo: dict[str, Any]) -> list[str]:
    """The demo run as Markdown: total against the target, the phases, a table of tasks by seconds."""
    total, target = demo["total_s"], demo["target_s"]
    verdict = f"{total / target:.2f}x the target" if total > target else "within the target"
    lines = [f"Warm demo run (`{demo['command']}` on the demo corpus: a fresh workdir, data root and embedding "
             f"cache; the downloads and model files cached): {total:.1f} s, target {target} s ({verdict}); "
             f"{demo['cpu_s']:.1f} CPU-s in all. Start-up before the first task {demo['startup_s']:.1f} s, "
             f"tasks {demo['tasks_s']:.1f} s ({demo['between_s']:.1f} s of it between tasks), summary after "
             f"the last task {demo['summary_s']:.1f} s.", "",
             "Tasks by their share of the wall clock (time two tasks ran at once split between them; "
             "task-s: summed over a task's runs):", "",
             "| task | runs | wall s | of the total | task-s |", "|---|---|---|---|---|"]
    for name, row in sorted(demo["tasks"].items(), key=lambda item: -item[1]["wall_s"]):
        lines.append(f"| {name} | {row['count']} | {row['wall_s']:.1f} | {100 * row['wall_s'] / total:.0f}% | "
                     f"{row['seconds']:.1f} |")
    return lines
