"""The architectures' names: plain data, so that checking a name loads no torch."""

#: Every architecture :func:`mmvideos.models.build_model` builds, in the paper's order
#: (:mod:`mmvideos.models.registry` maps them to builders).
MODEL_NAMES: tuple[str, ...] = ("vggish", "vggish_bn", "vggish_fc", "resnet50", "mobilenetv2")
