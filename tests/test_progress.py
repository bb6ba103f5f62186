"""Progress bars: live on a terminal, periodic plain lines in a log."""

import io

from mmvideos.progress import progress_bar


def test_off_a_terminal_the_bar_is_whole_lines():
    log = io.StringIO()  # not a TTY, like a pod's log or a kfp.local task
    for _ in progress_bar(range(50), desc="annotate_visual", unit="frame", file=log):
        pass
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert lines[0].startswith("annotate_visual:   0%|") and "0/50" in lines[0]
    assert lines[-1].startswith("annotate_visual: 100%|") and "50/50" in lines[-1]


def test_disabled_bar_writes_nothing():
    log = io.StringIO()
    list(progress_bar(range(5), desc="x", file=log, disable=True))
    assert log.getvalue() == ""


def test_off_a_terminal_a_short_transient_bar_stays_out_of_the_log():
    log = io.StringIO()
    for _ in progress_bar(range(50), desc="steps", leave=False, file=log):
        pass
    assert log.getvalue().strip() == ""
