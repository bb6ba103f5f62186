"""Progress bars that suit both a terminal and a log.

On a terminal a stage shows tqdm's live bar. Anywhere else (a Kubeflow pod's log, a task of
``kfp.local``, CI) a redrawn bar would be one endless line, so the bar is written as a plain
line every ``LOG_INTERVAL_S`` seconds instead — and ``mmvideos run`` echoes those lines.
"""

from __future__ import annotations

import contextlib
import io
import sys
import threading
from collections.abc import Iterator

from tqdm import tqdm

#: Seconds between progress lines when the output is not a terminal.
LOG_INTERVAL_S = 15.0


class _Lines(io.TextIOBase):
    """Turns tqdm's carriage-return redraws into one line per update."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        for line in text.replace("\r", "\n").split("\n"):
            if line.strip():
                self._stream.write(line.rstrip() + "\n")
        self._stream.flush()
        return len(text)

    def flush(self) -> None:
        self._stream.flush()


def progress_bar(iterable=None, **kwargs) -> tqdm:
    """``tqdm(iterable, **kwargs)``, as periodic log lines when stderr is not a terminal.

    In a log a transient bar (``leave=False``, e.g. the steps of one epoch under an epochs bar)
    writes lines only once it has run ``LOG_INTERVAL_S``: short inner loops stay out of the log.
    """
    stream = kwargs.pop("file", None) or sys.stderr
    if kwargs.get("disable") or stream.isatty():
        return tqdm(iterable, file=stream, **kwargs)
    if kwargs.get("leave") is False:
        kwargs.setdefault("delay", LOG_INTERVAL_S)
    return tqdm(iterable, file=_Lines(stream), mininterval=LOG_INTERVAL_S, maxinterval=LOG_INTERVAL_S,
                ascii=True, **kwargs)


@contextlib.contextmanager
def keep_alive(bar: tqdm, every: float = LOG_INTERVAL_S) -> Iterator[tqdm]:
    """Redraw ``bar`` every ``every`` seconds while the block runs, so that a step with few, long
    updates (a classifier fit of minutes) still writes a line to the log at that pace."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            bar.refresh()

    thread = threading.Thread(target=beat, name="progress-keep-alive", daemon=True)
    thread.start()
    try:
        yield bar
    finally:
        stop.set()
        thread.join()
