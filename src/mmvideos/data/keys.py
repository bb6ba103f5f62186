"""The keys of the data root's units (:mod:`mmvideos.data.dataroot`) and where a unit lives in any root.

A unit's key is the SHA-256 of its stage, the hash of the code that computes it (the import
closure of :data:`UNIT_CODE`, :func:`mmvideos.closure.code_digest`), a hand-kept version
(:data:`STAGE_VERSIONS`, for a deliberate re-key), the content hash of its input and the settings
that change its result: an edited line of that code gives new keys, so the units it can change
are computed again, and no other.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from mmvideos.closure import code_digest

#: A stage's units are keyed by the code that computes them (:data:`UNIT_CODE`); bump a version
#: only to re-key every unit of a stage on purpose (e.g. what a unit depends on outside the package).
STAGE_VERSIONS = {"probe": "3", "clip": "3", "annotate_visual": "1", "annotate_audio": "1", "features": "1", "pack": "1"}

#: Per unit stage, the modules that compute its units and those left out of their import closure
#: (the annotate module imports each modality's annotator only when that modality runs: a visual
#: unit does not depend on the audio tagger or its log-mel front end, nor an audio unit on the
#: image classifier). Probe units of the benchmark fingerprints (``ingest.exclude``) are computed
#: by ``overlap``, which ``ingest`` imports.
UNIT_CODE: dict[str, tuple[tuple[str, ...], frozenset[str]]] = {
    "probe": (("mmvideos.stages.ingest",), frozenset()),
    "clip": (("mmvideos.stages.clip",), frozenset()),
    "annotate_visual": (("mmvideos.stages.annotate", "mmvideos.annotators.visual"),
                        frozenset({"mmvideos.annotators.audio"})),
    "annotate_audio": (("mmvideos.stages.annotate", "mmvideos.annotators.audio"),
                       frozenset({"mmvideos.annotators.visual"})),
    "features": (("mmvideos.stages.features",), frozenset()),
    "pack": (("mmvideos.stages.pack",), frozenset()),
}


def unit_path(stage: str, key: str, name: str = "") -> str:
    """Where a unit (or its file ``name``) lives relative to any data root: ``<stage>/<key[:2]>/<key>[/<name>]``."""
    return "/".join([stage, key[:2], key, *([name] if name else [])])


def unit_code(stage: str) -> str:
    """The hash of the code that computes ``stage``'s units (:data:`UNIT_CODE`)."""
    modules, exclude = UNIT_CODE[stage]
    return code_digest(modules, exclude)


def unit_key(stage: str, **inputs: Any) -> str:
    """The content key of a unit: SHA-256 over the stage, its code (:func:`unit_code`), its
    version and ``inputs``.

    ``inputs`` must be JSON-serialisable (content hashes, settings as dicts).
    """
    payload = json.dumps({"stage": stage, "code": unit_code(stage), "version": STAGE_VERSIONS[stage], **inputs},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()
