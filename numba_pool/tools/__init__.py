"""Tools built on the public API: the ``numba-pool`` command line, its demo picture, benchmark and self-check."""
