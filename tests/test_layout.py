"""The package's layout: a folder per role, no import circles, modules that fit in a head."""

from __future__ import annotations

import graphlib
import re
from pathlib import Path

import pytest

from mmvideos.closure import SRC, imported_modules, module_file, package_modules

REPO = Path(__file__).resolve().parents[1]
#: The most lines a module of src/mmvideos may have.
MAX_LINES = 450


def import_graph() -> dict[str, set[str]]:
    """``{module: the mmvideos modules it imports}`` over the whole package (components and
    pipelines included), imports inside functions and under ``TYPE_CHECKING`` counted too."""
    return {name: imported_modules(module_file(name), name) - {name} for name in package_modules()}


def test_the_graph_sees_every_kind_of_import():
    graph = import_graph()
    assert "mmvideos.data.storage" in graph["mmvideos.stages.ingest"]  # from mmvideos.data import storage
    assert "mmvideos.stages.annotate" in graph["mmvideos.settings"]  # inside a function
    assert "mmvideos.annotators.visual" in graph["mmvideos.annotators"]  # from a package, in a function
    assert "mmvideos.stages.pretrain" in graph["mmvideos.components.pretrain"]  # components/ is part of it


def test_the_import_graph_has_no_cycles():
    """Settings read the stages' configs (never the reverse), annotators receive their settings,
    and source listing sits below both ingest and its overlap guard."""
    try:
        tuple(graphlib.TopologicalSorter(import_graph()).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def test_a_cycle_is_caught():
    """The check itself can fail: a graph with a circle raises."""
    graph = import_graph() | {"mmvideos.data.storage": {"mmvideos.stages.ingest"}}
    with pytest.raises(graphlib.CycleError):
        tuple(graphlib.TopologicalSorter(graph).static_order())


def test_no_module_is_too_long():
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_every_folder_says_what_belongs_there():
    for init in SRC.glob("*/__init__.py"):
        assert (init.read_text().lstrip().startswith('"""')), f"{init.relative_to(REPO)} has no docstring"


def test_every_package_is_installed():
    """pyproject.toml lists every subpackage (an unlisted one is missing from the wheel)."""
    listed = set(re.findall(r'"(mmvideos(?:\.\w+)*)"', (REPO / "pyproject.toml").read_text().split("packages = [")[1]
                            .split("]")[0]))
    found = {name for name in package_modules() if module_file(name).name == "__init__.py"}
    assert found == listed


def test_where_things_live_is_current():
    """docs/design.md's "Where things live" lists each folder of the package with the first line
    of its ``__init__`` docstring (``mmvideos docs`` writes it)."""
    from mmvideos.tooling.docs import where_things_live

    assert where_things_live() in (REPO / "docs" / "design.md").read_text()
