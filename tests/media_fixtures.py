"""Real media files made at test time with PyAV (its bundled FFmpeg) and espeak-ng."""

from __future__ import annotations

from pathlib import Path

from mmvideos.bench.leakage import speech  # noqa: F401 (the tests' fixtures)
from mmvideos.demo.synth_media import colour_bars, tone, write_corpus, write_media  # noqa: F401 (the tests' fixtures)


def root_with(units: Path, root: Path):
    """A data root at ``root`` holding a copy of the units under ``units`` (another root): a
    hand-made clip folder's manifest names its units relative to the data root that reads them."""
    import shutil

    from mmvideos.data.dataroot import DataRoot

    shutil.copytree(units, root, dirs_exist_ok=True)
    return DataRoot(root)
