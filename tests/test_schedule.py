"""Recurring runs take KFP's six-field cron; a five-field one is refused with a hint."""

import pytest

from mmvideos.cli import main
from mmvideos.schedule import check_cron


def test_six_field_cron_is_accepted():
    assert check_cron("0 0 3 * * 0") == "0 0 3 * * 0"
    assert check_cron(" 0  */30 * * * MON-FRI ") == "0 */30 * * * MON-FRI"


def test_five_field_cron_is_refused_with_a_hint():
    with pytest.raises(ValueError, match="leading seconds field"):
        check_cron("0 3 * * 0")


def test_garbage_is_refused():
    with pytest.raises(ValueError, match="day of week"):
        check_cron("0 0 3 * * sunday;rm")


def test_cli_refuses_a_bad_cron_before_contacting_the_cluster(capsys):
    assert main(["schedule", "--host", "http://127.0.0.1:9", "--cron", "0 3 * * 0"]) == 2
    assert "KFP needs 6" in capsys.readouterr().err
