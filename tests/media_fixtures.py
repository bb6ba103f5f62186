"""Real media files made at test time with PyAV (its bundled FFmpeg) and espeak-ng."""

from __future__ import annotations

from mmvideos.bench.leakage import speech  # noqa: F401 (the tests' fixtures)
from mmvideos.demo.synth_media import colour_bars, tone, write_corpus, write_media  # noqa: F401 (the tests' fixtures)
