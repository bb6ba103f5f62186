"""What components hand to the Kubeflow UI: artifact metadata and Markdown summaries.

Kept free of kfp imports: it works on anything with ``.metadata`` (a dict) and ``.path``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mmvideos.atomic import write_text

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


def finish(artifact, report, title: str, summary: dict, tables: dict[str, str | Path] | None = None) -> None:
    """Attach ``summary`` to ``artifact``'s metadata and write the Markdown ``report`` artifact."""
    artifact.metadata.update({k: v for k, v in summary.items() if isinstance(v, (int, float, str, bool))})
    write_text(summary_markdown(title, summary, tables), report.path)
