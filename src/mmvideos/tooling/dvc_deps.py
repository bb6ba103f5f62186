"""The code each ``dvc.yaml`` stage depends on: the source files its stage function imports.

A stage's result changes when its settings, its inputs or its code change; DVC sees the first two
through ``params`` and ``deps``, and the third through the files listed here. The list is the
closure of ``mmvideos`` imports (at any depth, also those inside functions) from the module that
holds the stage's function, so an edit of ``clip.py`` re-runs ``clip`` and every stage whose code
imports it, and an edit of ``report.py`` only ``report``. Left out: the CLI (a thin adapter),
the package's ``__init__`` (its version string) and ``mmvideos.settings`` (the validation of the
whole parameter file, which decides whether a run starts, not what a stage computes; through it
every stage would depend on every other stage's code).

``python -m mmvideos.tooling.dvc_deps --write`` rewrites the code deps of ``dvc.yaml`` in place (comments
kept); ``--check`` exits 1 when they are stale (``make lock`` runs the first, the tests the second).
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

PACKAGE = "mmvideos"
SRC = Path(__file__).resolve().parents[1]
REPO = SRC.parents[1]
#: Subpackages kept at the top of the repository rather than under src/mmvideos.
TOP_LEVEL = ("components", "pipelines")
#: Modules whose code no stage's result depends on (see the module docstring).
NOT_STAGE_CODE = frozenset({"mmvideos.settings"})

#: Per stage of dvc.yaml, the modules that hold its code (the CLI calls into these).
STAGE_MODULES: dict[str, tuple[str, ...]] = {
    "ingest": ("mmvideos.stages.ingest", "mmvideos.demo.corpus"),
    "clip": ("mmvideos.stages.clip",),
    "annotate_visual": ("mmvideos.stages.annotate",),
    "annotate_audio": ("mmvideos.stages.annotate",),
    "merge_labels": ("mmvideos.stages.annotate", "mmvideos.stages.label_audit"),
    "features": ("mmvideos.stages.features",),
    "pretrain": ("mmvideos.stages.pretrain", "mmvideos.model_card"),
    "transfer": ("mmvideos.stages.transfer", "mmvideos.demo.benchmark"),
    "report": ("mmvideos.stages.report",),
    "label_drift": ("mmvideos.stages.drift",),
}


def module_file(name: str) -> Path | None:
    """The source file of module ``mmvideos.x.y`` (a package's ``__init__.py``), or None.

    ``mmvideos.components`` and ``mmvideos.pipelines`` live at the top of the repository
    (pyproject's ``package-dir``), beside ``src/``, in a checkout.
    """
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = SRC.joinpath(*parts[1:])
    if len(parts) > 1 and parts[1] in TOP_LEVEL and not base.exists() and not base.with_suffix(".py").exists():
        base = REPO.joinpath(*parts[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def package_modules() -> list[str]:
    """Every module of the package in this checkout (``src/mmvideos``, ``components/``,
    ``pipelines/``), by dotted name, packages by their own name."""
    names = []
    for top, folder in ((PACKAGE, SRC), *((f"{PACKAGE}.{t}", REPO / t) for t in TOP_LEVEL)):
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            names.append(".".join([top, *parts[:-1]] + ([] if parts[-1] == "__init__" else [parts[-1]])))
    return sorted(set(names))


def imported_modules(path: Path, module: str) -> set[str]:
    """The ``mmvideos`` modules that the file ``path`` (module ``module``) imports anywhere (at the
    top, in functions, under ``TYPE_CHECKING``): ``from pkg import name`` imports the module
    ``pkg.name`` where there is one, else ``pkg``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if module_file(f"{base}.{alias.name}") else base)
    return {name for name in found if name.split(".")[0] == PACKAGE and module_file(name)}


def code_closure(modules: tuple[str, ...]) -> list[Path]:
    """The source files of ``modules`` and of every ``mmvideos`` module they import, transitively,
    without the package's top ``__init__.py``; sorted."""
    seen: dict[str, Path] = {}
    todo = list(modules)
    while todo:
        name = todo.pop()
        path = module_file(name)
        if name in seen or path is None or name in NOT_STAGE_CODE:
            continue
        seen[name] = path
        parents = name.split(".")
        todo += [".".join(parents[:i]) for i in range(2, len(parents))]  # a subpackage's __init__ runs too
        todo += sorted(imported_modules(path, name) - seen.keys())
    files = {path for path in seen.values() if path != SRC / "__init__.py"}
    return sorted(files)


def stage_code_deps(stage: str) -> list[str]:
    """The code deps of ``stage`` as paths relative to the repository (``src/mmvideos/...``)."""
    return [path.relative_to(SRC.parents[1]).as_posix() for path in code_closure(STAGE_MODULES[stage])]


def _stage_body(stages: dict, name: str) -> dict:
    stage = stages[name]
    return stage["do"] if "do" in stage else stage  # a foreach stage keeps its deps under `do`


def update(dvc_yaml: Path, write: bool) -> list[str]:
    """Stages whose code deps in ``dvc_yaml`` differ from their import closure; with ``write``,
    those deps are rewritten (other deps, comments and order are kept)."""
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    doc = yaml.load(dvc_yaml.read_text())
    stale = []
    for name in STAGE_MODULES:
        body = _stage_body(doc["stages"], name)
        deps = body.setdefault("deps", [])
        code = [d for d in deps if isinstance(d, str) and d.startswith("src/")]
        wanted = stage_code_deps(name)
        if code == wanted:
            continue
        stale.append(name)
        keep = [d for d in deps if not (isinstance(d, str) and d.startswith("src/"))]
        deps.clear()
        deps.extend(keep + wanted)
    if write and stale:
        with open(dvc_yaml, "w") as fh:
            yaml.dump(doc, fh)
    return stale


def main(argv: list[str] | None = None) -> int:
    """``--write``: bring dvc.yaml's code deps up to date; ``--check``: exit 1 if they are stale."""
    parser = argparse.ArgumentParser(prog="python -m mmvideos.tooling.dvc_deps", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dvc-yaml", type=Path, default=Path("dvc.yaml"))
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", action="store_true", help="rewrite the code deps in place")
    group.add_argument("--check", action="store_true", help="exit 1 when a stage's code deps are stale")
    args = parser.parse_args(argv)
    stale = update(args.dvc_yaml, write=args.write)
    verb = "updated" if args.write else "stale"
    print(f"{verb} code deps: {', '.join(stale)}" if stale else "code deps up to date")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
