"""``params.yaml``, read and validated whole before any task runs: the registry of its sections.

One schema per section. A stage's section is its config dataclass (a new setting is one new
field there); the others are pydantic models here. Types are strict (``bf16: "no"`` is not a
boolean, ``lr: 1e-4`` without a dot is YAML for a string), unknown sections and keys are errors,
and ranges are the dataclasses' own checks plus the cross-section ones of ``_CROSS_CHECKS``.

This module decides whether a run starts, never what a stage computes: ``mmvideos.tooling.dvc_deps``
leaves it out of the stages' code deps, so that a stage does not depend on every other stage's
settings class through it.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from mmvideos.config import brief, from_dict, model_names

_STRICT = ConfigDict(extra="forbid", strict=True)
T = TypeVar("T")


class DataSection(BaseModel):
    """``params.yaml: data``."""

    model_config = _STRICT
    source: str = ""
    root: str = "data/root"
    slots: int = Field(1, ge=1)


class BenchmarksSection(BaseModel):
    """``params.yaml: benchmarks``: a data root per benchmark ("" = esc50's demo benchmark)."""

    model_config = _STRICT
    esc50: str | None = None
    tut2018: str | None = None
    audioset: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _known_names(cls, values: Any) -> Any:
        """An unknown benchmark name lists the known ones (a typo like ``esc-50`` is the usual cause)."""
        unknown = sorted(set(values) - set(cls.model_fields)) if isinstance(values, dict) else []
        if unknown:
            raise ValueError(f"unknown benchmark {', '.join(map(repr, unknown))}: the benchmarks are "
                             f"{', '.join(cls.model_fields)} (give each its data folder in its published layout)")
        return values


def section_schemas() -> dict[str, type]:
    """``{section: schema}`` of every section ``params.yaml`` may hold (a dataclass or a pydantic
    model). Sections named ``pretrain_<preset>`` are further ``pretrain`` presets (YAML anchors).

    To add a section (e.g. ``resources``), add one line here.
    """
    from mmvideos.cluster.placement import STAGES, Cluster, TaskResources
    from mmvideos.stages.annotate import AudioConfig, MergeConfig, VisualConfig
    from mmvideos.stages.clip import ClipConfig
    from mmvideos.stages.drift import DriftConfig
    from mmvideos.stages.features import FeatureConfig
    from mmvideos.stages.ingest import IngestConfig
    from mmvideos.stages.pretrain import PretrainConfig
    from mmvideos.stages.transfer import TransferConfig

    return {"data": DataSection, "ingest": IngestConfig, "clip": ClipConfig, "annotate_visual": VisualConfig,
            "annotate_audio": AudioConfig, "merge_labels": MergeConfig, "features": FeatureConfig,
            "pretrain": PretrainConfig, "transfer": TransferConfig, "benchmarks": BenchmarksSection,
            "cluster": Cluster, "label_drift": DriftConfig,
            "resources": create_model("ResourcesSection", __config__=_STRICT,
                                      **{stage: (_model_of(TaskResources) | None, None)
                                         for stage in ("default", *STAGES)})}


def _model_of(cls: type) -> type[BaseModel]:
    """A strict pydantic model of a config dataclass's fields (tuples may be written as lists)."""
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        return cls
    hints = typing.get_type_hints(cls)
    fields = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if typing.get_origin(hint) is tuple:
            hint = list[typing.get_args(hint)[0]] | hint
        elif dataclasses.is_dataclass(hint):  # a nested section (ingest.exclude): a mapping in YAML
            hint = _model_of(hint)
        fields[f.name] = (hint, None)
    return create_model(f"{cls.__name__}Schema", __config__=_STRICT, **fields)


def validate_params(params: dict[str, Any], where: str = "params.yaml") -> None:
    """Check a whole parameter mapping: sections, keys, types, ranges and cross-section rules.

    Raises ``ValueError`` naming every problem (``section.key: what is wrong``) on one line.
    """
    schemas = section_schemas()
    problems = []
    for name, values in params.items():
        schema = schemas.get("pretrain" if name.startswith("pretrain_") else name)
        if schema is None:
            problems.append(f"{name}: unknown section (known: {', '.join(sorted(schemas))})")
            continue
        if (name == "pretrain" or name.startswith("pretrain_")) and isinstance(values, dict) and "models" in values:
            try:  # one task's settings per model of the list, each checked
                names = model_names(values)
            except ValueError as exc:
                problems.append(f"{name}.models: {exc}")
                continue
            rest = {k: v for k, v in values.items() if k != "models"}
            problems += sorted({p for arch in names for p in _section_problems(name, schema, rest | {"model": arch})})
            continue
        problems += _section_problems(name, schema, values or {})
    for check in _CROSS_CHECKS:
        if not problems:
            problems += check(params)
    if problems:
        raise ValueError(f"{where}: " + "; ".join(problems))


def _section_problems(name: str, schema: type, values: Any) -> list[str]:
    if not isinstance(values, dict):
        return [f"{name}: expected a mapping of settings, got {brief(values)}"]
    try:
        _model_of(schema).model_validate(values)
    except ValidationError as exc:
        return [f"{name}.{'.'.join(str(p) for p in e['loc'])}: {_plain(e)}" for e in exc.errors()]
    if dataclasses.is_dataclass(schema):
        try:
            from_dict(schema, values)  # the dataclass's own range checks
        except (ValueError, TypeError) as exc:
            return [f"{name}: {exc}"]
    return []


def _plain(error: dict) -> str:
    """A pydantic error in plain words, with a hint for YAML's traps."""
    value, kind = error.get("input"), error["type"]
    if kind == "extra_forbidden":
        return "unknown setting"
    text = f"{error['msg'].lower()}, got {brief(value)}"
    if kind == "bool_type":
        text += " (write true or false, unquoted)"
    elif kind == "float_type" and isinstance(value, str):
        text += " (YAML reads 1e-4 as text: write 1.0e-4)"
    return text


def _clip_fits_ingest(params: dict[str, Any]) -> list[str]:
    """A kept video must be long enough for one clip: ``ingest.min_duration_s >= clip.min_s``."""
    from mmvideos.stages.clip import ClipConfig
    from mmvideos.stages.ingest import IngestConfig

    ingest, clip = from_dict(IngestConfig, params.get("ingest")), from_dict(ClipConfig, params.get("clip"))
    if ingest.min_duration_s < clip.min_s:
        return [f"ingest.min_duration_s ({ingest.min_duration_s:g}) is below clip.min_s ({clip.min_s:g}): videos "
                "in between would pass ingest and yield no clip; raise ingest.min_duration_s"]
    return []


def _resources_fit(params: dict[str, Any]) -> list[str]:
    """Every task's resources (``resources.default`` under its stage's entry) are consistent."""
    from mmvideos.cluster.placement import STAGES, task_resources

    problems = []
    for stage in STAGES:
        try:
            task_resources(params, stage)
        except (ValueError, TypeError) as exc:
            problems.append(f"resources.{stage}: {exc}")
    return sorted(set(problems))


_CROSS_CHECKS = (_clip_fits_ingest, _resources_fit)

#: The largest parameter file read, in bytes (the repository's is about 11 kB).
MAX_PARAMS_BYTES = 1 << 20
#: The most YAML nodes a parameter file may expand to, an alias counted each time it is used:
#: a few aliases nested can otherwise stand for billions of values (an "alias bomb").
MAX_PARAMS_NODES = 100_000


def read_yaml(text: str, where: str) -> Any:
    """Parse ``text`` (``where``: its file, for messages) as YAML with PyYAML's safe loader,
    refusing more than :data:`MAX_PARAMS_BYTES` and documents whose aliases expand to more than
    :data:`MAX_PARAMS_NODES` nodes (checked on the node graph, before anything is built)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        raise ValueError(f"{where}: nested too deeply to be a parameter file") from None
    if node is None:
        return None
    sizes: dict[int, int] = {}

    def expanded(n: yaml.Node) -> int:
        if id(n) not in sizes:
            children = [c for pair in n.value for c in pair] if isinstance(n, yaml.MappingNode) else \
                n.value if isinstance(n, yaml.SequenceNode) else []
            total = 1
            for child in children:
                total += expanded(child)
                if total > MAX_PARAMS_NODES:
                    raise ValueError(f"{where}: its aliases expand to more than {MAX_PARAMS_NODES} values (line "
                                     f"{n.start_mark.line + 1}); a parameter file is far smaller: remove the nested "
                                     "aliases")
            sizes[id(n)] = total
        return sizes[id(n)]

    expanded(node)
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(node)
    finally:
        loader.dispose()


#: The repository's parameter file; `mmvideos` commands take ``--params`` to point elsewhere.
DEFAULT_PARAMS = Path("params.yaml")


def load_params(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Read a ``params.yaml`` into ``{section: {key: value}}``, validated whole
    (:func:`mmvideos.settings.validate_params`): a bad setting anywhere fails every command before any work.

    With no file named (``None``) it reads
    ./params.yaml, or the packaged copy (the repository's ``params.yaml`` at build time) when
    there is none, so an installed ``mmvideos`` works outside a checkout. A file named
    explicitly must exist: a mistyped ``--params`` is an error, not a silent fall-back.
    """
    implicit = path is None
    path = DEFAULT_PARAMS if path is None else Path(path)
    if path.is_file():
        if (size := path.stat().st_size) > MAX_PARAMS_BYTES:
            raise ValueError(f"{path}: {size} bytes, more than the {MAX_PARAMS_BYTES} a parameter file "
                             "may hold; is it the right file?")
        text = path.read_text()
    elif implicit:
        from importlib import resources

        text = resources.files("mmvideos").joinpath("params.yaml").read_text()
    else:
        raise FileNotFoundError(f"parameter file {str(path)!r} not found")
    data = read_yaml(text, str(path)) or {}
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f"{path}: expected a mapping of stage name -> mapping of settings")
    validate_params(data, str(path))
    return data


def section(cls: type[T], name: str, path: str | Path | None = None) -> T:
    """Load one section of ``params.yaml`` as ``cls`` (defaults fill keys it leaves out)."""
    return from_dict(cls, load_params(path).get(name))
