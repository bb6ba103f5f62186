"""The figures in docs/ are written by `make docs` from the committed run's results/, never by
hand: the docs match what the generator writes, and docs/ holds no image of its own."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from mmvideos import docs_gen
from mmvideos.cli import main

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results"


def test_the_docs_are_what_the_generator_writes_from_the_committed_run():
    assert docs_gen.generate(RESULTS, REPO / "docs", REPO / "README.md", check=True) == []


def test_docs_hold_no_figure_the_generator_does_not_write():
    assert docs_gen.stray_figures(REPO / "docs") == []
    for page in (REPO / "docs").glob("*.md"):
        for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page.read_text()):
            path = (page.parent / target).resolve()
            assert path.is_file() and RESULTS in path.parents, f"{page.name}: {target} is not a plot of results/"
    assert (REPO / "docs" / "results.md").is_file()


def test_the_generated_numbers_are_the_run_s(tmp_path):
    page = (REPO / "docs" / "results.md").read_text()
    labels = json.loads((RESULTS / "labels" / "summary.json").read_text())
    final = json.loads((RESULTS / "pretrain" / "summary.json").read_text())["final"]
    assert f"{labels['vocabulary_used']:,} of {labels['vocabulary_total']:,} classes" in page
    assert f"val Top-1 {100 * final['val_top1']:.1f}%" in page
    table = [line for line in (RESULTS / "report" / "results.md").read_text().splitlines() if line.startswith("|")]
    assert all(line in page for line in table)
    design = (REPO / "docs" / "design.md").read_text()
    assert f"val mAP {100 * final['val_map']:.1f}%" in design


def test_a_hand_edited_figure_is_found_and_rewritten(tmp_path, capsys):
    docs = shutil.copytree(REPO / "docs", tmp_path / "docs")
    design = docs / "design.md"
    original = design.read_text()
    block = original[original.index("<!-- BEGIN GENERATED demo-figures"):original.index("<!-- END GENERATED")]
    edited = re.sub(r"val Top-1 [\d.]+%", "val Top-1 99.9%", block)
    assert edited != block
    design.write_text(original.replace(block, edited))
    (docs / "results.md").unlink()
    args = ["docs", "--results", str(RESULTS), "--docs", str(docs), "--readme", str(REPO / "README.md")]
    assert main([*args, "--check"]) == 2
    assert "design.md" in capsys.readouterr().err
    assert main(args) == 0
    assert design.read_text() == original
    assert (docs / "results.md").read_text() == (REPO / "docs" / "results.md").read_text()
    assert main([*args, "--check"]) == 0


def test_an_unknown_block_is_an_error(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "x.md").write_text("<!-- BEGIN GENERATED nonsense: x -->\n1\n<!-- END GENERATED nonsense -->\n")
    with pytest.raises(ValueError, match="nonsense"):
        docs_gen.generate(RESULTS, docs, None, check=True)
