"""Typed configuration: a ``params.yaml`` section (a plain dict) into a stage's dataclass.

Each stage module declares its own frozen dataclass of hyper-parameters (``IngestConfig`` in
``mmvideos.stages.ingest`` and so on).  ``params.yaml`` holds one section per stage, and
:func:`from_dict` turns a section (as KFP passes it) into that dataclass, refusing unknown keys so
a typo in ``params.yaml`` is an error rather than a silently ignored setting. This module imports
no stage: reading and validating the whole file is :mod:`mmvideos.settings`, which sits above the
stages.
"""

from __future__ import annotations

import dataclasses
import reprlib
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")

_BRIEF = reprlib.Repr()
_BRIEF.maxlevel, _BRIEF.maxdict, _BRIEF.maxlist, _BRIEF.maxtuple, _BRIEF.maxset = 2, 4, 4, 4, 4
_BRIEF.maxstring, _BRIEF.maxother, _BRIEF.maxlong = 60, 60, 40


def brief(value: Any) -> str:
    """A short repr of ``value`` for an error message: at most a few elements, two levels and
    about 100 characters, however large (or alias-shared) the structure is."""
    text = _BRIEF.repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def from_dict(cls: type[T], values: dict[str, Any] | None) -> T:
    """Build the dataclass ``cls`` from ``values``; unknown keys raise ``ValueError``.

    Numbers are coerced to the field's declared type: KFP passes dict parameters through JSON
    (protobuf ``Struct``), where every number comes back as a float. A field typed as a
    dataclass takes a nested mapping (``ingest.exclude``), built the same way.
    """
    values = dict(values or {})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown setting(s) {unknown}; known: {sorted(names)}")
    return cls(**{k: _coerce(cls.__name__, k, v, hints.get(k)) for k, v in values.items()})


def _coerce(owner: str, key: str, value: Any, hint: Any) -> Any:
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if value is None and type(None) in options:
        return value
    hint = next((t for t in options if t is not type(None)), hint)
    if hint is bool and not isinstance(value, bool):
        raise ValueError(f"{owner}.{key}: expected true or false, got {brief(value)}")
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):  # a nested section (ingest.exclude)
        return from_dict(hint, value)
    if hint is int and isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{owner}.{key}: expected a whole number, got {value}")
        return int(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def check_compiled(setting: str, value: Any, compiled: Any) -> None:
    """Refuse a run-time ``value`` of a setting that shaped the compiled DAG (a fan-out).

    The Kubeflow UI lets a run override any parameter, but the number of tasks of a
    ``ParallelFor`` was fixed by ``mmvideos compile``: raises ``ValueError`` saying so.
    """
    if value != compiled:
        raise ValueError(
            f"{setting} is {brief(value)} in this run but {brief(compiled)} in the compiled "
            f"pipeline: {setting} is fixed "
            f"when the pipeline is compiled, recompile with the new value in params.yaml "
            f"(mmvideos --params FILE compile --output pipeline.yaml) and upload that instead of overriding it per run")


def model_names(section: dict[str, Any] | None) -> list[str]:
    """The architectures a ``params.yaml: pretrain`` section trains: its ``models`` list (one
    pretraining task each, every one transferred to every benchmark), else its one ``model``.

    Names are checked against the known architectures when each task's settings are built
    (``mmvideos.stages.pretrain.pretrain_config``).
    """
    section = section or {}
    if "models" in section and "model" in section:
        raise ValueError("pretrain: give either models (a list) or model, not both")
    names = section.get("models")
    if names is None:
        return [section.get("model") or "vggish_fc"]
    if isinstance(names, str) or not names or len(set(names)) != len(names):
        raise ValueError(f"pretrain.models must be a non-empty list of distinct architectures, got {brief(names)}")
    return [str(name) for name in names]
