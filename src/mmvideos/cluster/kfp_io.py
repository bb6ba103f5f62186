"""What components hand to the Kubeflow UI: artifact metadata and Markdown summaries.

Kept free of kfp imports: it works on anything with ``.metadata`` (a dict) and ``.path``.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pandas as pd

from mmvideos.data.atomic import write_json, write_text

_MAX_ROWS = 50


def markdown_table(df: pd.DataFrame, max_rows: int = _MAX_ROWS) -> str:
    """A GitHub-flavoured Markdown table of the first ``max_rows`` rows of ``df``."""
    if df.empty:
        return "_none_\n"
    shown = df.head(max_rows)
    cells = [[str(v) for v in row] for row in shown.itertuples(index=False)]
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
    if len(df) > max_rows:
        lines.append(f"\n_{len(df) - max_rows} more rows not shown_")
    return "\n".join(lines) + "\n"


def summary_markdown(title: str, summary: dict, tables: dict[str, str | Path] | None = None) -> str:
    """A Markdown page: the summary as a key/value table, then each parquet table named."""
    parts = [f"# {title}\n", markdown_table(pd.DataFrame(
        {"": list(summary), "value": [summary[k] for k in summary]}))]
    for caption, path in (tables or {}).items():
        if Path(path).exists():
            parts += [f"\n## {caption}\n", markdown_table(pd.read_parquet(path))]
    return "\n".join(parts)


def attach(artifact, summary: dict) -> None:
    """Put a stage summary's scalars (numbers, text, flags) on ``artifact``'s metadata for the UI."""
    artifact.metadata.update({k: v for k, v in summary.items() if isinstance(v, (int, float, str, bool))})


def finish(artifact, report, title: str, summary: dict, tables: dict[str, str | Path] | None = None) -> None:
    """Attach ``summary`` to ``artifact``'s metadata and write the Markdown ``report`` artifact."""
    attach(artifact, summary)
    write_text(summary_markdown(title, summary, tables), report.path)


def copy_page(source: str | Path, target: str | Path) -> None:
    """Copy a rendered page (HTML or Markdown) into an artifact path, with images inlined.

    The Kubeflow UI shows an HTML or Markdown artifact as a single file, so PNGs it references
    by relative path are embedded as ``data:`` URIs.
    """
    source = Path(source)
    text = source.read_text()

    def inline(match: re.Match) -> str:
        image = source.parent / match.group(2)
        if not image.is_file():
            return match.group(0)
        data = base64.b64encode(image.read_bytes()).decode()
        return f"{match.group(1)}data:image/png;base64,{data}{match.group(3)}"

    text = re.sub(r"""((?:src=|\]\()["']?)([^"')\s]+\.png)(["')])""", inline, text)
    write_text(text, target)


def log_metrics(metrics, values: dict) -> None:
    """Log every number in ``values`` on a KFP ``Metrics`` artifact; nested dicts become
    ``outer_inner`` keys, anything else (None, text, lists) is skipped.

    The metrics are also written to the artifact's file: KFP keeps them as metadata only, and
    ``kfp.local``'s cache treats an artifact without a file as missing, re-running the task.
    """
    for key, value in _flatten(values).items():
        metrics.log_metric(key, value)
    write_json(dict(metrics.metadata), metrics.path)


def _flatten(values: dict, prefix: str = "") -> dict[str, float]:
    flat: dict[str, float] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}_"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[f"{prefix}{key}"] = float(value)
    return flat


def log_transfer(results_dir: str | Path, metrics, confusion) -> None:
    """Put a transfer folder's numbers on KFP artifacts: every row's Top-1/Top-5/mAP/AUC and their 95%
    bootstrap interval (``top1_low``, ``top1_high``, ...) on ``metrics`` and, for single-label benchmarks, the confusion matrix on ``confusion``."""
    results_dir = Path(results_dir)
    result = json.loads((results_dir / "metrics.json").read_text())
    log_metrics(metrics, {row["model"]: {k: row[k] for k in ("top1", "top5", "map", "auc")}
                          | {f"{k}_{side}": bound for k, ci in (row.get("ci") or {}).items() if ci  # 95% interval
                             for side, bound in zip(("low", "high"), ci)} for row in result["rows"]})
    matrix = results_dir / "confusion.json"
    data = json.loads(matrix.read_text()) if matrix.exists() else None
    if data is not None:
        confusion.log_confusion_matrix(data["labels"], data["matrix"])
    write_json(data or {}, confusion.path)  # a file behind the artifact, as for the metrics
