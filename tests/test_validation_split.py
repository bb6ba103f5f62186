"""A validation set too small to measure anything is said so, and a small corpus's split can be widened."""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from mmvideos.stages.ingest import IngestConfig, widen_validation
from mmvideos.training.evaluation import plot_curves, write_curves_page


def _videos(n: int, val: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"video_id": [f"00000000-0000-0000-0000-{i:012d}" for i in range(n)],
                         "split": ["val"] * val + ["train"] * (n - val)})


def test_val_fraction_widens_a_small_corpus_split_and_warns(caplog):
    with caplog.at_level(logging.WARNING):
        widened = widen_validation(_videos(4, val=1), 0.5)
    assert (widened["split"] == "val").sum() == 2 and widened["split"].iloc[0] == "val"  # the fold rule's kept
    assert "departing from the paper's 14/1 split" in caplog.text
    assert widen_validation(_videos(4, val=1), 0.5).equals(widened)  # stable: by content hash
    assert (widen_validation(_videos(3), 0.9)["split"] == "train").sum() == 1  # one video left to train on
    assert widen_validation(_videos(10, val=3), 0.2).equals(_videos(10, val=3))  # already enough: unchanged
    assert widen_validation(_videos(4), 0.0).equals(_videos(4))  # 0: the paper's rule alone
    with pytest.raises(ValueError, match="val_fraction"):
        IngestConfig(val_fraction=1.0)


def test_the_curves_page_says_why_instead_of_validation_figures(tmp_path):
    note = "validation set of 12 clips (fewer than 30), 2 videos (fewer than 5)"
    history = [{"epoch": e, "step": 4 * e, "loss": 1.0 / e, "lr": 1e-3, "val_top1": 0.9, "val_map": 0.8,
                "val_note": note} for e in (1, 2)]
    page = write_curves_page(history, plot_curves(history, tmp_path / "curves.png"), tmp_path / "curves.html")
    text = page.read_text()
    assert "No validation figures</b>: validation set of 12 clips" in text
    assert "val_top1" not in text and "0.9<" not in text
