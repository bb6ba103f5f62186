"""Tasks end with their run: a watcher that kills what ``mmvideos run`` started once it is gone.

``mmvideos run`` starts every task as a subprocess (kfp's local runner), and pretrain starts
torchrun and its ranks below that. A run killed with ``kill -9`` cannot stop them, so before its
first task it starts this watcher in a session of its own (``python -m mmvideos.cluster.reaper
PID``), holding the read end of a pipe whose write end only the run holds. The watcher notes the
run's descendants (from ``/proc``, by pid and start time, so a reused pid is never touched) every
0.2 s; when the pipe reaches end-of-file (the run has exited, however) it kills every noted
descendant still alive, and their children, with SIGKILL. A run that ends normally has no
descendants left, so nothing is killed. Linux only (elsewhere no watcher is started).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

PROC = Path("/proc")


def _table() -> dict[int, tuple[int, str]]:
    """``{pid: (parent pid, start time)}`` of every process, from ``/proc/<pid>/stat``."""
    found = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        found[int(entry.name)] = (int(fields[1]), fields[19])
    return found


def descendants(pid: int, table: dict[int, tuple[int, str]] | None = None) -> dict[int, str]:
    """``{pid: start time}`` of every process below ``pid``."""
    table = _table() if table is None else table
    children: dict[int, list[int]] = {}
    for child, (parent, _) in table.items():
        children.setdefault(parent, []).append(child)
    found, todo = {}, list(children.get(pid, []))
    while todo:
        child = todo.pop()
        if child not in found:
            found[child] = table[child][1]
            todo += children.get(child, [])
    return found


def watch(pid: int, gone: threading.Event, every_s: float = 0.2) -> None:
    """Note ``pid``'s descendants until ``gone`` is set, then SIGKILL those still alive (and
    whatever they started since)."""
    noted: dict[int, str] = {}
    while not gone.wait(every_s):
        noted |= descendants(pid)
        noted.pop(os.getpid(), None)  # the watcher is a child of the run too
    for _ in range(3):  # a process may start a child while its parent is being killed
        table = _table()
        alive = {p: t for p, t in noted.items() if table.get(p, (0, ""))[1] == t}
        for p in list(alive):
            alive |= descendants(p, table)
        alive.pop(os.getpid(), None)
        if not alive:
            return
        for p in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p, signal.SIGKILL)
        noted = alive


@contextlib.contextmanager
def tasks_end_with_this_process() -> Iterator[None]:
    """Start the watcher for this process (module docstring); on a normal exit stop it."""
    if not PROC.is_dir():
        yield
        return
    read, write = os.pipe()
    watcher = subprocess.Popen([sys.executable, "-m", "mmvideos.cluster.reaper", str(os.getpid())], stdin=read,
                               start_new_session=True, close_fds=True)
    os.close(read)
    try:
        yield
    finally:
        os.close(write)  # end-of-file for the watcher, as a kill -9 of this process would give
        watcher.wait()


def main() -> None:
    """``python -m mmvideos.cluster.reaper PID``: watch ``PID`` until standard input ends."""
    pid = int(sys.argv[1])
    gone = threading.Event()
    thread = threading.Thread(target=watch, args=(pid, gone), daemon=True)
    thread.start()
    with contextlib.suppress(OSError):
        while os.read(0, 1 << 12):
            pass
    gone.set()
    thread.join()


if __name__ == "__main__":
    main()
