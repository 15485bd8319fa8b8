"""``python -m numba_pool``: the same as the ``numba-pool`` command."""

import sys

from .tools.cli import main

sys.exit(main())
