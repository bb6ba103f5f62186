"""The repository's own tooling, not part of the pipeline.

``docs`` (``mmvideos docs``: the figures in docs/ and README generated from results/ and bench/)
and ``dvc_deps`` (``python -m mmvideos.tooling.dvc_deps``: each dvc.yaml stage's code deps, the
import closure of its stage module).
"""
