"""Seeds as a setting: pretrain.seeds gives a model per seed, the report their mean ± sd and each value."""

from __future__ import annotations

import json

import pytest
from test_benchmarks import make_esc50, sounds

from mmvideos.stages.pretrain import PretrainConfig, pretrain_seeds, seed_folders
from mmvideos.stages.report import report
from mmvideos.stages.transfer import TransferConfig, transfer
from mmvideos.training.synthetic import write_synthetic_features

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_three_pretraining_seeds_give_three_models_and_mean_and_sd_rows(tmp_path):
    features = write_synthetic_features(tmp_path / "features", num_clips=48, val_clips=0)
    cfg = PretrainConfig(model="vggish_fc", width_mult=0.0625, epochs=1, batch_size=16, shuffle_buffer=16,
                         num_workers=0, device="cpu", val_clips=0, seed=4, seeds=3)
    summary = pretrain_seeds(features, tmp_path / "model", cfg, progress=False)
    assert summary["seeds"] == [4, 5, 6] and set(summary["per_seed"]) == {"4", "5", "6"}
    models = seed_folders(str(tmp_path / "model"))
    assert sorted(models) == [4, 5, 6]
    cards = [json.loads((tmp_path / "model" / f"seed-{s}" / "model.json").read_text()) for s in (4, 5, 6)]
    assert [c["seed"] for c in cards] == [4, 5, 6] and len({c["sha256"] for c in cards}) == 3  # three models

    (tmp_path / "voices").mkdir()
    root = make_esc50(tmp_path / "esc50", sounds(tmp_path / "voices"), per_fold=1)
    out = tmp_path / "transfer"
    per_seed = transfer("esc50", root, tmp_path / "model", out, TransferConfig(seeds=2, bootstrap=200, val_folds=2, val_rounds=1),
                        progress=False, cache_dir=tmp_path / "cache")
    assert set(per_seed) == {"4", "5", "6"} and (out / "transfers.json").is_file()
    computed = [[row["model"] for row in result["rows"]] for result in json.loads((out / "transfers.json").read_text())]
    assert computed[0] == ["pretrained", "random_init", "logmel_stats", "pretrained_1nn", "logmel_stats_1nn"]
    assert computed[1:] == [["pretrained", "pretrained_1nn"]] * 2  # the rest does not depend on the pre-training
    report([out], tmp_path / "report")
    data = json.loads((tmp_path / "report" / "results.json").read_text())
    rows = {row["label"]: row["cells"][root.name] for row in data["rows"]}
    pretrained, random_init = rows["vggish_fc pretrained"], rows["vggish_fc random init"]
    assert pretrained["n"]["seeds"] == 3 * 2 and len(pretrained["top1"]["seeds"]) == 6  # 3 models x 2 probe seeds
    assert random_init["n"]["seeds"] == 2  # the random weights do not depend on the pre-training seed
    assert pretrained["top1"]["seed_sd"] is not None and random_init["top1"]["seed_sd"] is not None
    markdown = (tmp_path / "report" / "results.md").read_text()
    line = next(x for x in markdown.splitlines() if x.startswith("| vggish_fc pretrained |"))
    mean, sd = 100 * pretrained["top1"]["value"], 100 * pretrained["top1"]["seed_sd"]
    assert line.startswith(f"| vggish_fc pretrained | {mean:.1f} ± {sd:.1f} [")
    random_init = next(x for x in markdown.splitlines() if x.startswith("| vggish_fc random init |"))
    assert random_init.count(" ± ") == 3 and "| – |" in random_init  # Top-1, mAP, AUC; no Top-5 over 3 classes
    spread = next(x for x in markdown.split("## Spread")[1].splitlines() if x.startswith("| vggish_fc pretrained |"))
    assert spread.endswith(" | 6: " + ", ".join(f"{100 * v:.1f}" for v in pretrained["top1"]["seeds"]) + " |")
