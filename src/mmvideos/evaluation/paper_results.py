"""The paper's published transfer results (Tables 2-4), the reference columns of the report.

Percent, as printed in the paper. Rows are keyed by our names: an architecture of
``mmvideos.models`` pre-trained on MM-Videos (the paper's cumulative VGGish lines: ``vggish``,
then ``vggish_bn`` with batch normalisation, then ``vggish_fc`` fully convolutional), and
``vggish_youtube100m``, Google's released VGGish (the name docs/transfer.md gives that baseline in
``transfer.baselines``). The paper reports Top-1, Top-5, mAP and AUC on AudioSet, and Top-1 and
mAP on ESC-50 and TUT 2018.
"""

from __future__ import annotations

#: The metrics each table of the paper reports.
PAPER_METRICS = {"audioset": ("top1", "top5", "map", "auc"), "esc50": ("top1", "map"), "tut2018": ("top1", "map")}

#: ``{benchmark: {row: {metric: percent}}}``.
PAPER_RESULTS: dict[str, dict[str, dict[str, float]]] = {
    "audioset": {  # Table 2 (classifiers trained on the balanced subset only)
        "vggish_youtube100m": {"top1": 55.3, "top5": 74.9, "map": 23.1, "auc": 94.3},
        "vggish": {"top1": 58.3, "top5": 78.1, "map": 27.0, "auc": 95.0},
        "vggish_bn": {"top1": 59.1, "top5": 78.5, "map": 28.6, "auc": 95.2},
        "vggish_fc": {"top1": 59.9, "top5": 79.4, "map": 30.6, "auc": 95.5},
        "mobilenetv2": {"top1": 55.1, "top5": 74.3, "map": 21.8, "auc": 93.7},
        "resnet50": {"top1": 60.9, "top5": 81.1, "map": 32.3, "auc": 96.0},
    },
    "esc50": {  # Table 3
        "vggish_youtube100m": {"top1": 81.1, "map": 86.1},
        "vggish": {"top1": 87.3, "map": 91.7},
        "vggish_bn": {"top1": 90.3, "map": 95.2},
        "vggish_fc": {"top1": 91.4, "map": 95.9},
        "mobilenetv2": {"top1": 83.8, "map": 89.4},
        "resnet50": {"top1": 91.2, "map": 95.5},
    },
    "tut2018": {  # Table 4
        "vggish_youtube100m": {"top1": 62.6, "map": 67.0},
        "vggish": {"top1": 68.2, "map": 71.6},
        "vggish_bn": {"top1": 70.1, "map": 75.2},
        "vggish_fc": {"top1": 71.4, "map": 76.8},
        "mobilenetv2": {"top1": 66.2, "map": 69.5},
        "resnet50": {"top1": 70.7, "map": 75.3},
    },
}

#: The rows the paper prints beside its own for reference, none of them run here (labels as the
#: report shows them): Table 2's ResNet-50 of Hershey et al. [1], trained on all of AudioSet's
#: training subsets where the paper's classifiers see only the balanced one; Table 3's human
#: listeners [13] and FBEs+ConvRBM-BANK [26], the best ESC-50 result the paper cites; Table 4's
#: DCASE 2018 Task 1A baseline [15].
PAPER_REFERENCES: dict[str, dict[str, dict[str, float]]] = {
    "audioset": {"Google ResNet-50 (all AudioSet training subsets)": {"map": 31.4, "auc": 95.9}},
    "esc50": {"human listeners": {"top1": 81.3}, "FBEs+ConvRBM-BANK": {"top1": 86.5}},
    "tut2018": {"DCASE 2018 baseline": {"top1": 59.7}},
}

#: Our architectures in the order of the paper's tables.
PAPER_ORDER = ("vggish", "vggish_bn", "vggish_fc", "mobilenetv2", "resnet50")


def paper_value(benchmark: str, row: str, metric: str) -> float | None:
    """The paper's figure (percent) for ``row`` on ``benchmark``, or ``None`` where it gives none."""
    return PAPER_RESULTS.get(benchmark, {}).get(row, {}).get(metric)
