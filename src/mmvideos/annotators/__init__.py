"""Machine annotators (paper section 2): image classifiers and audio taggers that label clips.

An annotator is named by ``model`` + ``weights`` URI + ``labels`` URI (``base`` explains the
registry); ``visual`` holds the image classifiers (EfficientNet-Lite0, any TorchScript file),
``audio`` the taggers (YAMNet, any ONNX or TorchScript file). They are imported, and so
registered, when a model is first looked up (importing this package loads no torch);
``mmvideos.annotate`` runs them over a clip folder.
"""

from mmvideos.annotators.base import Annotator, load_annotator, register, registered

__all__ = ["Annotator", "load_annotator", "register", "registered"]
