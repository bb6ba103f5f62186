"""``python -m mmvideos.cli``: the ``mmvideos`` command."""

import sys

from mmvideos.cli import main

sys.exit(main())
