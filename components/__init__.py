"""Kubeflow components of mmvideos: thin ``@dsl.component`` adapters over ``mmvideos`` stages.

Each component reads its input artifact folders, calls one plain stage function of the
``mmvideos`` package (where the logic and its tests live), and writes typed output artifacts
plus metadata the Kubeflow UI shows. The same image (images/Dockerfile) runs every component,
on CPU and on GPU node pools; ``MMVIDEOS_IMAGE`` overrides it at compile time.
"""

import os

#: The image when ``MMVIDEOS_IMAGE`` is unset.
DEFAULT_IMAGE = "ghcr.io/mmvideos/mmvideos:0.1.0"

#: Container image holding mmvideos and its dependencies (images/Dockerfile), read when the
#: components are imported (``mmvideos compile``). KFP's cache keys on the component spec, which
#: names the image but not its contents: tag it by git SHA or digest, not a reused tag.
IMAGE = os.environ.get("MMVIDEOS_IMAGE", DEFAULT_IMAGE)
