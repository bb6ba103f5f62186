"""The figures in the documentation, written from a run's results and the bench reports, never by hand.

``mmvideos docs`` (``make docs``) reads the git-tracked ``results/`` of a ``dvc repro`` (the
committed demo run: label statistics, pretraining summary, transfer table, drift verdict) and the
git-tracked bench reports (``bench/bench.json`` of ``make bench``; ``bench-gpu/bench_gpu.json`` of
``make bench-gpu``, once it has run on a GPU; ``bench/determinism.json`` and ``bench/leakage.json``), then

* writes ``docs/results.md`` whole: every figure of that run, with the plots linked from
  ``results/`` (docs/ holds no image of its own);
* writes ``docs/sizing.md`` whole from ``bench/scale.json`` (``mmvideos bench --scale``), where
  there is one: :func:`mmvideos.bench.scale.sizing_plan`;
* refreshes each marked block ``<!-- BEGIN GENERATED name -->`` ... ``<!-- END GENERATED name -->``
  of the Markdown files in ``docs/`` and of ``README.md`` with the block of that name.

Text outside the blocks carries no figure of a run. ``--check`` writes nothing and lists what is
stale (the tests run it, so a number cannot drift away from its run).
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from mmvideos.data.atomic import write_text

BEGIN = "<!-- BEGIN GENERATED {name}: {source}; do not edit -->"
#: Each generated block: where it comes from (said in its BEGIN marker).
SOURCES = {"demo-figures": "`make docs` writes this block from results/",
           "layout": "`make docs` writes this block from the package's docstrings",
           "bench-figures": "`make bench` (or `make docs`) writes this block from bench/bench.json",
           "leakage": "`make bench` (or `make docs`) writes this block from bench/leakage.json",
           "determinism": "`make bench` (or `make docs`) writes this block from bench/determinism.json",
           "bench-gpu": "`make bench-gpu` (or `make docs`) writes this block from bench-gpu/bench_gpu.json"}
END = "<!-- END GENERATED {name} -->"
_BLOCK = re.compile(r"<!-- BEGIN GENERATED (?P<name>[\w-]+):[^>]*-->\n.*?<!-- END GENERATED (?P=name) -->", re.S)
#: Image files, which docs/ holds none of (its pages link the run's plots in results/).
IMAGE_SUFFIXES = (".png", ".svg", ".jpg", ".jpeg", ".gif", ".webp")


def _load(folder: Path, name: str, hint: str = "run `dvc repro` (or `dvc pull`) first") -> dict:
    path = folder / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {hint}")
    return json.loads(path.read_text())


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _table_lines(markdown: str) -> str:
    """The first table of a Markdown file (its first run of lines starting with ``|``)."""
    lines = markdown.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("|")), len(lines))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return "\n".join(lines[start:end])


def _report_body(markdown: str) -> str:
    """The report's ``results.md`` less its title, its sections one level down (a page's subsections)."""
    body = markdown.split("\n", 1)[1] if markdown.startswith("# ") else markdown
    return re.sub(r"^## ", "### ", body.strip(), flags=re.M)


def _benchmark_lines(markdown: str) -> list[str]:
    """The report's lines naming each benchmark with its size (before its table)."""
    head = markdown.split("\n|", 1)[0]
    return [line for line in head.splitlines() if line.startswith("- ")] or ["- the benchmarks of the table below"]


def _verdicts(markdown: str) -> list[str]:
    """The report's sentences on which row differences are within noise (its "Within noise or not" list)."""
    section = markdown.split("## Within noise or not", 1)[1] if "## Within noise or not" in markdown else ""
    section = section.split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("- ")]


def figures(results: Path) -> dict:
    """The run's figures gathered from ``results/``."""
    labels = _load(results, "labels/summary.json")
    pretrain = _load(results, "pretrain/summary.json")
    drift = _load(results, "drift/metrics.json")
    _load(results, "report/metrics.json")  # present: the report ran
    report = (results / "report" / "results.md").read_text()
    return {"labels": labels, "pretrain": pretrain, "drift": drift, "table": _table_lines(report), "report": report,
            "source": _load(results, "source.json")}


def _summary_block(fig: dict) -> str:
    """The short block for docs/design.md and README.md."""
    labels, pretrain, final = fig["labels"], fig["pretrain"], fig["pretrain"].get("final", {})
    lines = [
        f"- Labels: {labels['clips']} clips; {labels['mean_visual_labels_per_clip']:g} visual + "
        f"{labels['mean_audio_labels_per_clip']:g} audio = {labels['mean_labels_per_clip']:g} labels per clip "
        f"(paper: about 13); {labels['vocabulary_used']:,} of {labels['vocabulary_total']:,} classes used "
        f"({_pct(labels['utilisation'])}; the paper: 93.97% on 15 M clips).",
        f"- Pretraining ({pretrain['model']} at width {pretrain['width_mult']:g}, {pretrain['epochs']} epochs, "
        f"batch {pretrain['batch_size']}, {pretrain['train_clips']} training clips): "
        + (f"validation not meaningful ({final['val_note']})." if final.get("val_note") else
           f"val Top-1 {_pct(final.get('val_top1'))}, val mAP {_pct(final.get('val_map'))} "
           f"(best {_pct(pretrain.get('best_val_map'))})."),
        "- Transfer (%), on " + "; ".join(line[2:].split(":")[0] for line in _benchmark_lines(fig["report"])) + ":",
        "",
        *("  " + line for line in fig["table"].splitlines()),
    ]
    verdicts = _verdicts(fig["report"])
    if verdicts:  # the paired bootstrap's verdicts: which differences between rows are beyond noise
        lines += ["", "  Brackets: 95% bootstrap intervals. Differences (paired bootstrap):", "",
                  *("  " + line for line in verdicts)]
    return "\n".join(lines)


def results_page(fig: dict) -> str:
    """docs/results.md: every figure of the run, plots linked from ``results/``."""
    labels, drift = fig["labels"], fig["drift"]
    link = lambda name: f"../results/{name}"  # noqa: E731  (docs/ and results/ sit side by side in the repository)
    annotators = "\n".join(  # the label table's provenance: which annotator, version and weights made it
        f"| {modality} | {a['annotator']} | {a['annotator_version']} | `{a['weights_sha256'][:16]}` |"
        for modality, records in sorted(labels.get("annotators", {}).items()) for a in records)
    text = [
        "# The demo run's figures\n",
        "Generated by `make docs` (`mmvideos docs`) from `results/`, which `dvc repro` writes and git "
        "keeps with `dvc.lock`; do not edit by hand. `dvc metrics show` prints the same numbers; "
        "`dvc metrics diff` and `dvc plots diff` compare two commits.\n",
        f"Source: `{fig['source'].get('source') or 'the demo corpus'}` ({fig['source'].get('files')} files, "
        f"listing fingerprint `{str(fig['source'].get('fingerprint', ''))[:16]}`).\n",
        "## Summary\n",
        _summary_block(fig) + "\n",
        "## Labels\n",
        f"Full statistics: [{link('labels/stats.md')}]({link('labels/stats.md')}).\n",
        "| modality | annotator | version | weights SHA-256 |\n|---|---|---|---|\n" + annotators + "\n" if annotators else "",
        *(f"![{name}]({link('labels/' + name + '.png')})\n"
          for name in ("top_categories", "samples_per_category", "labels_per_clip")),
        "## Pretraining\n",
        f"![training curves]({link('pretrain/curves.png')})\n",
        "## Transfer\n",
        _report_body(fig["report"]) + "\n",
        f"![transfer results]({link('report/results.png')})\n",
        "## Label drift\n",
        "| " + " | ".join(drift) + " |\n|" + "---|" * len(drift) + "\n| "
        + " | ".join(str(v) for v in drift.values()) + " |\n",
    ]
    return "\n".join(t for t in text if t)


def bench_block(bench: Path) -> str:
    """The figures of ``mmvideos bench`` (``bench.json``): machine, versions, each figure with its
    reference, ratio and target, the loader sizing, the annotators, training throughput and, where
    the report has it, the warm demo run (total against its target, a table of tasks)."""
    from mmvideos.bench.run import markdown_body

    return markdown_body(_load(bench, "bench.json", "run `make bench` first"))  # bench.md less heading and chart


def leakage_block(bench: Path) -> str:
    """The leakage guard's detection table (``mmvideos bench --leakage``)."""
    from mmvideos.bench.leakage import markdown

    return markdown(_load(bench, "leakage.json", "run `mmvideos bench --leakage` first"))


def determinism_block(bench: Path) -> str:
    """What ``pretrain.deterministic`` costs and how far apart its runs land (``mmvideos bench --determinism``)."""
    from mmvideos.bench.determinism import markdown

    path = bench / "determinism.json"
    if not path.is_file():
        return f"Not measured yet: `mmvideos bench --determinism` writes `{path}`, and `make docs` puts its table here."
    return markdown(json.loads(path.read_text()))


def bench_gpu_block(bench_gpu: Path) -> str:
    """The figures of ``make bench-gpu`` (``bench_gpu.json``) measured on a GPU; until then, says so."""
    from mmvideos.bench.gpu import markdown_body

    path = bench_gpu / "bench_gpu.json"
    report = json.loads(path.read_text()) if path.is_file() else None
    if report is None or not str(report.get("device", "")).startswith("cuda"):
        return ("Not measured yet: no GPU has been lent to this work. `make bench-gpu` on a CUDA machine "
                "writes `bench-gpu/bench_gpu.json`, and `make docs` puts its tables here"
                + (f" (the `bench-gpu/bench_gpu.json` here ran on {report.get('device')!r}, not a GPU)."
                   if report is not None else "."))
    return markdown_body(report)


def generate(results: Path = Path("results"), docs: Path = Path("docs"), readme: Path | None = Path("README.md"),
             check: bool = False, bench: Path | None = None, bench_gpu: Path | None = None) -> list[Path]:
    """Write (or with ``check``, compare) docs/results.md and every marked block; returns the
    files that changed (or would change). ``bench`` and ``bench_gpu`` default to ``bench/`` and
    ``bench-gpu/`` beside ``results``; a block is computed only where a page holds it."""
    bench = results.parent / "bench" if bench is None else bench
    bench_gpu = results.parent / "bench-gpu" if bench_gpu is None else bench_gpu
    page = docs / "results.md"
    pages = [p for p in sorted(docs.glob("*.md")) + ([readme] if readme and readme.is_file() else []) if p != page]
    for path in pages:  # an unknown block is an error before any result is read
        unknown = {m["name"] for m in _BLOCK.finditer(path.read_text())} - set(SOURCES)
        if unknown:
            raise ValueError(f"{path}: no generator for the block(s) {sorted(unknown)} (known: {sorted(SOURCES)})")
    fig = figures(results)
    makers = {"demo-figures": lambda: _summary_block(fig), "layout": where_things_live,
              "bench-figures": lambda: bench_block(bench), "leakage": lambda: leakage_block(bench),
              "determinism": lambda: determinism_block(bench),
              "bench-gpu": lambda: bench_gpu_block(bench_gpu)}
    blocks: dict[str, str] = {}
    wanted = {page: results_page(fig)}
    if (bench / "scale.json").is_file():  # docs/sizing.md, whole, from the scale benchmark's measurements
        from mmvideos.bench.scale import sizing_plan

        wanted[docs / "sizing.md"] = sizing_plan(**json.loads((bench / "scale.json").read_text()))
    for path in pages:
        text = path.read_text()

        def refresh(match: re.Match) -> str:
            name = match["name"]
            if name not in blocks:
                blocks[name] = makers[name]()
            return f"{BEGIN.format(name=name, source=SOURCES[name])}\n{blocks[name]}\n{END.format(name=name)}"

        new = _BLOCK.sub(refresh, text)
        if new != text:
            wanted[path] = new
    changed = [path for path, text in wanted.items() if not path.is_file() or path.read_text() != text]
    if not check:
        for path in changed:
            write_text(wanted[path], path)
    return changed


def where_things_live() -> str:
    """The package's tree, a line per folder and top-level module: the first line of its docstring
    (docs/design.md's "Where things live"), so that the map cannot drift from the code."""
    from mmvideos.closure import REPO, SRC, TOP_LEVEL

    def first_line(path: Path) -> str:
        return (ast.get_docstring(ast.parse(path.read_text())) or "").split("\n", 1)[0].replace("``", "`")

    rows = [(f"{folder}/", first_line(REPO / folder / "__init__.py")) for folder in TOP_LEVEL]
    rows += [(f"src/mmvideos/{path.parent.name}/", first_line(path)) for path in sorted(SRC.glob("*/__init__.py"))]
    rows += [(f"src/mmvideos/{path.name}", first_line(path)) for path in sorted(SRC.glob("*.py"))
             if path.name != "__init__.py"]
    width = max(len(name) for name, _ in rows) + 2
    return "```text\n" + "\n".join(f"{name:<{width}}{line}".rstrip() for name, line in rows) + "\n```"


def outside_blocks(text: str) -> str:
    """The hand-written part of a page: its text with every generated block taken out."""
    return _BLOCK.sub("", text)


def stray_figures(docs: Path = Path("docs")) -> list[Path]:
    """Images under ``docs`` (the generator writes none: its pages link the run's plots in results/)."""
    return sorted(p for p in docs.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
