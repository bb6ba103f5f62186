"""A local run's pages as ``.html`` files, and one ``index.html`` linking them.

kfp.local names artifacts after their outputs (``report/plot``, ``label-drift/drift``): no
extension, so a browser shows an HTML artifact as source and a Markdown one as plain text. After
each run, :func:`write_pages` copies every page the run's tasks made into
``<workdir>/pages/<run>/<task>-<artifact>.html`` (Markdown rendered to HTML) and writes an
``index.html`` beside them with the run's summary; ``<workdir>/latest/index.html`` points at the
newest. A task that came from kfp.local's cache contributes the page of the run that computed it.
Every page stays one self-contained file, as the Kubeflow UI shows it (images inlined).
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from mmvideos.data.atomic import write_text

#: What the Kubeflow UI is given to show in one iframe: a page must stay under this. (KFP reads an
#: HTML or Markdown artifact whole into the page; the visualisation server's web-app viewer stopped
#: at 4 MB, kubeflow/pipelines#3873, and a 20 MB Markdown artifact crashed the tab, #5513.)
PAGE_LIMIT_BYTES = 4 * 1024 * 1024

_STYLE = ("body{font-family:system-ui,sans-serif;margin:1.5em;max-width:72em;color:#222}"
          "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}"
          "pre{background:#f6f6f6;padding:.8em;overflow-x:auto}")


def page_kind(path: Path) -> str | None:
    """``"html"``, ``"markdown"`` or None: what an artifact file is, from its first bytes (our
    HTML pages start with a doctype, our Markdown reports with a ``#`` title)."""
    if not path.is_file() or path.name == "executor_output.json" or not (path.parent / "executor_output.json").exists():
        return None  # not an artifact of its own (a file inside a folder artifact)
    with open(path, "rb") as fh:
        head = fh.read(64).lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return "html"
    return "markdown" if head.startswith(b"# ") else None


def _task_name(relative: Path) -> str:
    """``for-loop-11-iteration-0/pretrain/curves`` -> ``pretrain-curves`` (the loop's index kept
    when it is not the first, so two models' curves stay apart)."""
    parts, suffix = [], ""
    for part in relative.parts:
        loop = re.fullmatch(r"for-loop-\d+-iteration-(\d+)", part)
        if loop:
            suffix += f"-{loop.group(1)}" if loop.group(1) != "0" else ""
        else:
            parts.append(part)
    return "-".join(parts) + suffix


def _title(text: str, kind: str, fallback: str) -> str:
    found = (re.search(r"<title>(.*?)</title>", text, re.S | re.I) if kind == "html"
             else re.search(r"^# +(.+)$", text, re.M))
    return html.unescape(found.group(1).strip()) if found else fallback


def _markdown_page(text: str, title: str) -> str:
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(text)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>{body}</body></html>\n")


def write_pages(workdir: Path, outputs: dict[str, Path], run: Path | None, summary: str = "") -> Path:
    """Write the run's pages and index (module docstring); returns the index's path."""
    folders = sorted({p for path in outputs.values() for p in Path(path).parents
                      if p.parent == workdir / "outputs"} | ({run} if run else set()))
    found: dict[Path, tuple[Path, str]] = {}  # relative artifact path -> (file, kind), the newest run's first
    for folder in reversed(folders):
        for path in folder.rglob("*"):
            if path.relative_to(folder) not in found and (kind := page_kind(path)):
                found[path.relative_to(folder)] = path, kind
    name = (run or folders[-1]).name if folders else "run"
    out = workdir / "pages" / name
    rows, names = [], set()
    for relative, (path, kind) in sorted(found.items(), key=lambda item: _task_name(item[0])):
        text = path.read_text(errors="replace")
        title = _title(text, kind, _task_name(relative))
        slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60] or _task_name(relative)
        slug = slug if slug not in names else f"{slug}-{_task_name(relative)}"
        names.add(slug)
        target = out / f"{slug}.html"
        write_text(text if kind == "html" else _markdown_page(text, title), target)
        size = target.stat().st_size
        warn = f" <b>over the UI's {PAGE_LIMIT_BYTES >> 20} MiB</b>" if size > PAGE_LIMIT_BYTES else ""
        rows.append(f"<tr><td><a href='{target.name}'>{html.escape(title)}</a></td>"
                    f"<td>{html.escape(str(relative.parent.name))}</td><td>{size / 1024:.0f} KiB{warn}</td>"
                    f"<td><code>{html.escape(str(path))}</code></td></tr>")
    def index_page(prefix: str) -> str:
        return (f"<!doctype html><html><head><meta charset='utf-8'><title>mmvideos run {html.escape(name)}</title>"
                f"<style>{_STYLE}</style></head><body><h1>mmvideos run {html.escape(name)}</h1>"
                + (f"<pre>{html.escape(summary)}</pre>" if summary else "")
                + "<h2>Pages</h2><table><tr><th>page</th><th>task</th><th>size</th><th>artifact</th></tr>"
                + "".join(row.replace("href='", f"href='{prefix}") for row in rows) + "</table></body></html>\n")

    index = write_text(index_page(""), out / "index.html")
    write_text(index_page(f"../pages/{name}/"), workdir / "latest" / "index.html")  # links relative to latest/
    return index


def run_index(workdir: Path, run: str | None = None) -> Path:
    """The index page of ``run`` (a folder name under ``<workdir>/outputs``), else of the latest run."""
    index = workdir / "pages" / run / "index.html" if run else workdir / "latest" / "index.html"
    if not index.exists():
        known = sorted(p.parent.name for p in (workdir / "pages").glob("*/index.html")) if (workdir / "pages").is_dir() else []
        raise FileNotFoundError(f"{index}: no pages for {'run ' + run if run else 'a run'} in --workdir {workdir} "
                                f"(runs with pages: {', '.join(known) or 'none; run `mmvideos run` first'})")
    return index.resolve()
