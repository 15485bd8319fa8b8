"""``python -m bench.compare``: the CPU comparison table, the same as ``numba-pool bench``.

The code lives in :mod:`numba_pool.tools.benchmark` so that the installed command can run it.
"""

from numba_pool.tools.benchmark import main

if __name__ == "__main__":
    raise SystemExit(main())
