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


def test_a_long_step_still_writes_a_line_at_the_log_interval():
    """One fit of minutes between two updates: keep_alive redraws the bar (in a log: a line) every
    interval, here 0.05 s for 15 s, with what is running named."""
    import time

    from mmvideos.progress import keep_alive

    log = io.StringIO()
    bar = progress_bar(total=2, desc="esc50: fits", unit="fit", file=log)
    with keep_alive(bar, every=0.05):
        bar.set_postfix_str("pretrained", refresh=False)
        time.sleep(0.5)  # the long fit: no update meanwhile
        bar.update()
    bar.close()
    lines = [line for line in log.getvalue().splitlines() if line.startswith("esc50: fits:")]
    assert sum("0/2" in line and "pretrained" in line for line in lines) >= 5
