"""Machine annotators (paper section 2): image classifiers and audio taggers that label clips.

An annotator is named by ``model`` + ``weights`` URI + ``labels`` URI (``base`` explains the
registry); ``visual`` holds the image classifiers (EfficientNet-Lite0, any TorchScript file),
``audio`` the taggers (YAMNet, any ONNX or TorchScript file). They are imported, and so
registered, when a model is first looked up (importing this package loads no torch);
:mod:`mmvideos.stages.annotate` runs them over a clip folder, passing its settings in.
"""

from __future__ import annotations

from mmvideos.annotators.base import LOADERS, Annotator, AnnotatorSettings, register

__all__ = ["Annotator", "is_device", "known_models", "load_annotator", "register", "registered"]

#: The models that ship with mmvideos, per modality (what :func:`registered` lists once their modules are imported).
BUILT_IN = {"visual": ("efficientnet-lite0", "torchscript"), "audio": ("onnx", "torchscript", "yamnet")}


def known_models(modality: str) -> list[str]:
    """The model names a setting may give for ``modality`` without importing torch: the built-in
    ones and any registered so far (``@register`` in code imported before the settings are read)."""
    return sorted({*BUILT_IN[modality], *(model for mod, model in LOADERS if mod == modality)})


def is_device(device: str) -> bool:
    """Whether ``device`` names a torch device an annotator runs on: cpu, cuda or cuda:N."""
    kind, _, index = device.partition(":")
    return kind == "cpu" and not _ or kind == "cuda" and (not _ or index.isdigit())


def _import_loaders(modality: str) -> None:
    """Import the module whose loaders of ``modality`` ship with mmvideos (importing registers them).

    Plain import statements, not ``importlib``: ``mmvideos.tooling.dvc_deps`` reads them to know that
    the annotate stages' code includes these modules.
    """
    if modality == "visual":
        from mmvideos.annotators import visual  # noqa: F401
    elif modality == "audio":
        from mmvideos.annotators import audio  # noqa: F401


def registered(modality: str) -> list[str]:
    """The model names known for ``modality``."""
    _import_loaders(modality)
    return sorted(model for mod, model in LOADERS if mod == modality)


def load_annotator(modality: str, cfg: AnnotatorSettings) -> Annotator:
    """Build the annotator ``cfg.model`` of ``modality`` from its stage's settings (``VisualConfig``...)."""
    _import_loaders(modality)
    loader = LOADERS.get((modality, cfg.model))
    if loader is None:
        raise ValueError(f"unknown {modality} annotator {cfg.model!r}; known: {registered(modality)}")
    return loader(cfg)
