"""The import closure of ``mmvideos`` modules and the hash of its code.

What a module's code can do depends on its own file and the ``mmvideos`` modules it imports, at
any depth (also imports inside functions). :func:`closure_modules` follows those imports by
reading the source (``ast``, nothing is imported); :func:`code_digest` hashes what the closure's
files say. Two users: ``dvc.yaml``'s code deps (:mod:`mmvideos.tooling.dvc_deps`) and the keys of
the data root's units (:mod:`mmvideos.data.dataroot`), so a unit is computed again exactly when
the code that computes it changed.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

PACKAGE = "mmvideos"
SRC = Path(__file__).resolve().parent
REPO = SRC.parents[1]
#: Subpackages kept at the top of the repository rather than under src/mmvideos.
TOP_LEVEL = ("components", "pipelines")
#: Modules whose code no stage's result depends on: the validation of the whole parameter file, which
#: decides whether a run starts, not what a stage computes (through it every stage would depend on
#: every other stage's code).
NOT_STAGE_CODE = frozenset({"mmvideos.settings"})


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


def closure_modules(modules: tuple[str, ...], exclude: frozenset[str] = frozenset()) -> dict[str, Path]:
    """``{module: source file}`` of ``modules`` and of every ``mmvideos`` module they import,
    transitively, without :data:`NOT_STAGE_CODE`, the modules in ``exclude`` (and what only they
    import) and the package's top ``__init__.py``."""
    seen: dict[str, Path] = {}
    todo = list(modules)
    while todo:
        name = todo.pop()
        path = module_file(name)
        if name in seen or path is None or name in NOT_STAGE_CODE or name in exclude:
            continue
        seen[name] = path
        parents = name.split(".")
        todo += [".".join(parents[:i]) for i in range(2, len(parents))]  # a subpackage's __init__ runs too
        todo += sorted(imported_modules(path, name) - seen.keys())
    return {name: path for name, path in seen.items() if path != SRC / "__init__.py"}


def code_closure(modules: tuple[str, ...], exclude: frozenset[str] = frozenset()) -> list[Path]:
    """The source files of :func:`closure_modules`, sorted."""
    return sorted(closure_modules(modules, exclude).values())


@functools.lru_cache(maxsize=None)
def code_digest(modules: tuple[str, ...], exclude: frozenset[str] = frozenset()) -> str:
    """SHA-256 of the code of ``modules``' import closure (:func:`closure_modules`): each module's
    dotted name and its file's bytes, in name order. It does not depend on where the package is
    installed (a checkout, a wheel in an image), only on what its files say; one changed byte in
    the closure changes it. Computed once per process (the code does not change under it)."""
    digest = hashlib.sha256()
    for name, path in sorted(closure_modules(modules, exclude).items()):
        data = path.read_bytes()
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()
