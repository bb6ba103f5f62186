"""An own benchmark of any size: a 2-class x 5-clip folder in ESC-50's layout goes through the
transfer step and the report, which adapt the validation folds, leave out Top-5 and warn."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from test_benchmarks import make_esc50, sounds, write_wav

from mmvideos.benchmarks.common import BenchmarkError
from mmvideos.cli import main
from mmvideos.models import build_model
from mmvideos.stages.report import report
from mmvideos.stages.transfer import TransferConfig, transfer
from mmvideos.training.checkpoint import export_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def two_classes(tmp_path_factory):
    """tone and noise, 5 clips each, one per ESC-50 fold."""
    audio = sounds(tmp_path_factory.mktemp("voices"))
    return make_esc50(tmp_path_factory.mktemp("mine"), {"tone": audio["tone"], "noise": audio["noise"]}, per_fold=1)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A model as the pretrain step exports it, pretrained on 4 clips (its summary says so)."""
    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(1)
    export_model(folder, build_model("vggish_fc", 8, width_mult=0.125), "vggish_fc", 0.125, epoch=1)
    (folder / "summary.json").write_text(json.dumps({"train_clips": 4, "model": "vggish_fc"}))
    return folder


def test_a_two_class_five_clip_benchmark_end_to_end(two_classes, tiny_model, tmp_path):
    out = tmp_path / "transfer"
    summary = transfer("esc50", two_classes, tiny_model, out, TransferConfig(max_steps=100), progress=False,
                       cache_dir=tmp_path / "cache")
    # 4 training folds of 1 clip per class: 4 validation parts instead of transfer.val_folds' 5, and said so
    assert summary["val_folds"] == 4
    assert summary["notes"] == ["transfer.val_folds 5 lowered to 4: the smallest class has 4 clips in a split's "
                                "training folds"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classes"] == 2 and metrics["clips"] == 10
    for row in metrics["rows"]:
        assert row["top5"] is None and all("top5" not in split for split in row["splits"].values())
        assert row["fits"] and len(row["splits"]) == 5
    assert not any(key.endswith(".top5") for key in summary)
    assert summary["warnings"][0].startswith("the model was pretrained on 4 clips (fewer than 1000")
    # the report: Top-5 a dash, the warnings and the note under the table
    report([out], tmp_path / "report")
    table = pd.read_csv(tmp_path / "report" / "results.csv").set_index("Model")
    (top1,), (top5,) = ([c for c in table.columns if c.endswith(f" {m}")] for m in ("Top-1", "Top-5"))
    assert top5 == top1.replace("Top-1", "Top-5") and not top1.startswith("ESC-50")  # named by its folder, not ESC-50
    assert table[top5].isna().all() and table.loc["vggish_fc pretrained", top1] >= 0
    page = (tmp_path / "report" / "results.md").read_text()
    assert "- warning: the model was pretrained on 4 clips" in page
    assert "- note: transfer.val_folds 5 lowered to 4" in page
    assert "<p>warning: the model was pretrained on 4 clips" in (tmp_path / "report" / "results.html").read_text()
    assert not any(key.endswith(".top5") for key in json.loads((tmp_path / "report" / "metrics.json").read_text()))


def test_a_pretrained_row_under_the_log_mel_row_is_flagged():
    from mmvideos.stages.transfer import caveats

    bench = SimpleNamespace(multi_label=False, name="esc50")
    rows = [{"model": "pretrained", "top1": 0.4, "map": 0.5}, {"model": "logmel_stats", "top1": 0.7, "map": 0.8}]
    (warning,) = caveats(rows, bench, {"train_clips": 5000})
    assert warning == ("the pretrained embeddings score below the raw log-mel statistics on esc50 (top1 40.0 vs "
                       "70.0): the pretraining did not help here")
    assert caveats([{**rows[0], "top1": 0.8}, rows[1]], bench, {"train_clips": 5000}) == []


def test_too_small_a_benchmark_is_refused_naming_the_setting(tmp_path, tiny_model, capsys):
    """2 clips per class in 2 folds: a split's training folds hold 1 clip of each class, too few to
    validate on; refused before any audio is decoded, with the setting and the minimum."""
    (tmp_path / "voices").mkdir()
    audio = sounds(tmp_path / "voices")
    root = tmp_path / "tiny"
    rows = []
    for target, category in enumerate(("tone", "noise")):
        for fold in (1, 2):
            name = f"{fold}-{target}{fold}-A-{target}.wav"
            write_wav(root / "audio" / name, audio[category][fold])
            rows.append(f"{name},{fold},{target},{category},False,{target}{fold},A")
    (root / "meta").mkdir()
    (root / "meta" / "esc50.csv").write_text("filename,fold,target,category,esc10,src_file,take\n" + "\n".join(rows))
    with pytest.raises(BenchmarkError, match="transfer.val_folds needs at least 2 clips of every class"):
        transfer("esc50", root, tiny_model, tmp_path / "out", TransferConfig(), progress=False,
                 cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()  # refused before any audio was decoded
    assert main(["transfer", "--benchmark", "esc50", "--data", str(root), "--checkpoint", str(tiny_model),
                 "--output", str(tmp_path / "out")]) == 2
    assert "transfer.val_folds" in capsys.readouterr().err
