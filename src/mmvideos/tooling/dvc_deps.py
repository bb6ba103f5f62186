"""The code each ``dvc.yaml`` stage depends on: the source files its stage function imports.

A stage's result changes when its settings, its inputs or its code change; DVC sees the first two
through ``params`` and ``deps``, and the third through the files listed here. The list is the
closure of ``mmvideos`` imports (at any depth, also those inside functions) from the module that
holds the stage's function, so an edit of ``clip.py`` re-runs ``clip`` and every stage whose code
imports it, and an edit of ``report.py`` only ``report``. Left out: the CLI (a thin adapter),
the package's ``__init__`` (its version string), ``mmvideos.settings`` (the validation of the
whole parameter file, which decides whether a run starts, not what a stage computes; through it
every stage would depend on every other stage's code) and the modules of :data:`STAGE_EXCLUDES`.
The closure itself is :mod:`mmvideos.closure`, which also keys the data root's units by their code.

``python -m mmvideos.tooling.dvc_deps --write`` rewrites the code deps of ``dvc.yaml`` in place (comments
kept); ``--check`` exits 1 when they are stale (``make lock`` runs the first, the tests the second).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mmvideos.closure import SRC, code_closure, imported_modules, module_file, package_modules

__all__ = ["SRC", "STAGE_EXCLUDES", "STAGE_MODULES", "imported_modules", "main", "module_file", "package_modules",
           "stage_code_deps", "update"]

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
#: Modules a stage's module imports that its stage never runs: the annotate module registers the
#: other modality's annotator only when that modality is asked for (``annotators._import_loaders``),
#: so the visual stage does not depend on the audio tagger and its front end (features/logmel.py).
STAGE_EXCLUDES: dict[str, frozenset[str]] = {
    "annotate_visual": frozenset({"mmvideos.annotators.audio"}),
    "annotate_audio": frozenset({"mmvideos.annotators.visual"}),
    "merge_labels": frozenset({"mmvideos.annotators.audio", "mmvideos.annotators.visual"}),
}


def stage_code_deps(stage: str) -> list[str]:
    """The code deps of ``stage`` as paths relative to the repository (``src/mmvideos/...``)."""
    return [path.relative_to(SRC.parents[1]).as_posix()
            for path in code_closure(STAGE_MODULES[stage], STAGE_EXCLUDES.get(stage, frozenset()))]


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
