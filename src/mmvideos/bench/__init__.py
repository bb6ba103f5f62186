"""Measurements: every benchmark of the project (``make bench``, ``make bench-gpu``).

``run`` (``mmvideos bench``: each figure beside its reference, training throughput, the report),
``figures`` (log-mel, loader, decoding, frames, visual annotator), ``annotators`` (annotator
throughput), ``demo`` (the warm demo run timed per task), ``scale`` (``mmvideos bench --scale``:
the map stages at growing corpus sizes) and ``gpu`` (``python -m mmvideos.bench.gpu``).
Nothing in the pipeline imports this package.
"""
