"""The results table: several models and benchmarks in one table, the paper's figures beside ours."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from mmvideos.config import model_names
from mmvideos.stages.pretrain import pretrain_config
from mmvideos.stages.report import collect, flat_metrics, report, results_table
from mmvideos.training.evaluation import validation_note


def _result(benchmark: str, arch: str, top1: float, baseline: str | None = None) -> dict:
    names = ["pretrained", "random_init", "logmel_stats"] + ([baseline] if baseline else [])
    rows = [{"model": name, "pooling": "mean_std" if name == "logmel_stats" else "concat",
             "top1": top1 - 0.1 * i, "top5": 0.9, "map": 0.5, "auc": 0.8} for i, name in enumerate(names)]
    return {"benchmark": benchmark, "arch": arch, "rows": rows, "paper": True}  # the real benchmark's size


def _write(folder, result):
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(result))
    return folder


def test_an_ablation_makes_one_table_in_the_papers_order_with_reference_columns(tmp_path):
    results = [_result("esc50", "vggish_fc", 0.6, baseline="vggish_youtube100m"), _result("tut2018", "vggish_fc", 0.5),
               _result("esc50", "vggish", 0.4), _result("tut2018", "vggish", 0.3)]
    table = results_table(results).set_index("Model")
    assert list(table.index) == ["vggish pretrained", "vggish_fc pretrained", "vggish_youtube100m",
                                 "human listeners", "FBEs+ConvRBM-BANK", "DCASE 2018 baseline",
                                 "vggish random init", "vggish_fc random init", "log-mel stats"]
    # the paper's reference rows carry its figures only (Tables 3 and 4)
    assert table.loc["human listeners", "ESC-50 Top-1 (paper)"] == 81.3
    assert table.loc["FBEs+ConvRBM-BANK", "ESC-50 Top-1 (paper)"] == 86.5
    assert table.loc["DCASE 2018 baseline", "TUT 2018 Top-1 (paper)"] == 59.7
    assert pd.isna(table.loc["human listeners", "ESC-50 Top-1"])
    assert table.loc["vggish_fc pretrained", "ESC-50 Top-1"] == 60.0
    assert table.loc["vggish_fc pretrained", "ESC-50 Top-1 (paper)"] == 91.4  # Table 3
    assert table.loc["vggish pretrained", "TUT 2018 mAP (paper)"] == 71.6  # Table 4
    assert table.loc["vggish_youtube100m", "ESC-50 Top-1 (paper)"] == 81.1  # the released VGGish
    assert pd.isna(table.loc["vggish random init", "ESC-50 Top-1 (paper)"])
    assert "ESC-50 Top-5 (paper)" not in table.columns  # the paper gives Top-1 and mAP on ESC-50
    # the flat metrics keep the architectures apart
    flat = flat_metrics(results)
    assert flat["esc50.vggish_fc.pretrained.top1"] == 0.6 and flat["esc50.vggish.pretrained.top1"] == 0.4
    assert "tut2018.logmel_stats.map" in flat


def test_report_reads_collections_of_transfer_outputs(tmp_path):
    per_model = []
    for arch, top1 in (("vggish", 0.4), ("resnet50", 0.7)):
        folders = [_write(tmp_path / arch / b, _result(b, arch, top1)) for b in ("esc50", "audioset")]
        assert collect(folders, tmp_path / f"{arch}-collected") == 2
        per_model.append(tmp_path / f"{arch}-collected")
    summary = report(per_model, tmp_path / "report")
    assert summary["benchmarks"] == ["esc50", "audioset"]
    text = (tmp_path / "report" / "results.md").read_text()
    assert "| resnet50 pretrained |" in text and "AudioSet mAP (paper)" in text and "32.3" in text  # Table 2
    table = results_table([_result("audioset", "resnet50", 0.7)]).set_index("Model")
    reference = table.loc["Google ResNet-50 (all AudioSet training subsets)"]  # Table 2's first row
    assert (reference["AudioSet mAP (paper)"], reference["AudioSet AUC (paper)"]) == (31.4, 95.9)
    assert pd.isna(reference["AudioSet Top-1 (paper)"])
    assert "nan" not in text and "–" in text
    assert (tmp_path / "report" / "results.png").stat().st_size > 10_000


def test_pretrain_models_fan_out_into_one_config_each():
    section = {"models": ["vggish", "resnet50"], "epochs": 2, "width_mult": 0.25}
    assert model_names(section) == ["vggish", "resnet50"]
    assert pretrain_config(section, "resnet50").model == "resnet50"
    assert pretrain_config(section, "resnet50").epochs == 2
    with pytest.raises(ValueError, match="choose one"):
        pretrain_config(section)
    with pytest.raises(ValueError, match="not in pretrain.models"):
        pretrain_config(section, "mobilenetv2")
    with pytest.raises(ValueError, match="distinct"):
        model_names({"models": ["vggish", "vggish"]})
    with pytest.raises(ValueError, match="unknown model"):
        pretrain_config({"models": ["vgish"]})
    assert pretrain_config({"model": "vggish_bn"}).model == "vggish_bn"  # one model, the older spelling


def test_a_meaningless_validation_set_says_so():
    one_label = torch.ones(12, 5, dtype=torch.bool) & (torch.arange(5) == 0)  # every clip carries label 0
    assert "label(s) that tell clips apart" in validation_note(one_label, videos=3)
    assert "1 video (fewer than 5)" in validation_note(torch.eye(40, dtype=torch.bool), videos=1)
    # the demo's validation set: 12 clips of 2 videos
    assert validation_note(torch.eye(12, dtype=torch.bool), videos=2) == \
        "validation set of 12 clips (fewer than 30), 2 videos (fewer than 5)"
    assert "3 clips" in validation_note(torch.eye(3, dtype=torch.bool), videos=6)
    assert validation_note(torch.eye(40, dtype=torch.bool), videos=6) is None
