"""A kill -9 of `mmvideos run` leaves no process of it running (mmvideos.cluster.reaper)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from media_fixtures import tone, write_media

from mmvideos.cluster.reaper import _table, descendants


def _alive(noted: dict[int, str]) -> dict[int, str]:
    table = _table()
    return {pid: start for pid, start in noted.items() if table.get(pid, (0, ""))[1] == start}


def _kill_and_wait(proc: subprocess.Popen, noted: dict[int, str], within_s: float = 10.0) -> dict[int, str]:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + within_s
    while _alive(noted) and time.monotonic() < deadline:
        time.sleep(0.1)
    return _alive(noted)


def test_a_killed_process_takes_its_children_and_grandchildren_along(tmp_path):
    code = textwrap.dedent("""
        import subprocess, sys, time
        from mmvideos.cluster.reaper import tasks_end_with_this_process
        with tasks_end_with_this_process():
            child = subprocess.Popen([sys.executable, "-c",
                "import subprocess, time; subprocess.Popen(['sleep', '1000']); time.sleep(1000)"])
            print("up", flush=True)
            time.sleep(1000)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "up"
    deadline = time.monotonic() + 20
    while len(noted := descendants(proc.pid)) < 3 and time.monotonic() < deadline:  # watcher, child, sleep
        time.sleep(0.1)
    time.sleep(0.5)  # the watcher notes them
    assert len(noted) >= 3
    assert _kill_and_wait(proc, noted) == {}


def test_a_normal_exit_leaves_nothing_and_kills_nothing(tmp_path):
    code = ("from mmvideos.cluster.reaper import tasks_end_with_this_process\n"
            "with tasks_end_with_this_process():\n    pass\nprint('done')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "done", done.stderr


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="Linux /proc")
def test_kill_9_of_mmvideos_run_ends_its_tasks(tmp_path):
    """Before: tasks (and pretrain's torchrun) orphaned by a kill -9 of `mmvideos run` kept running."""
    source = tmp_path / "src"
    source.mkdir()
    write_media(source / "a.mp4", 4.0, audio=tone(4.0))
    proc = subprocess.Popen([sys.executable, "-m", "mmvideos.cli", "run", "--source", str(source), "--workdir",
                             str(tmp_path / "work"), "--data-root", str(tmp_path / "root")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    noted: dict[int, str] = {}
    deadline = time.monotonic() + 300
    task = None
    while task is None and proc.poll() is None and time.monotonic() < deadline:
        noted |= descendants(proc.pid)
        task = next((p for p in noted if _cmdline(p).count("executor_main")), None)
        time.sleep(0.1)
    assert task is not None, "no task started"
    time.sleep(0.5)
    noted |= descendants(proc.pid)
    assert _kill_and_wait(proc, noted) == {}


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
