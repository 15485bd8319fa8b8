"""The registry: every op numba_pool has, one line each.

An op lives in its own module here (argument checks, plan, which kernels run,
docstrings, and its :class:`~numba_pool.ops.spec.OpSpec`), with its kernels in
``backends/cpu/`` and ``backends/cuda/`` and its oracle in ``reference.py``.
Listing its spec below is all it takes for the public functions, layers, torch
modules, dask support and the checks to include it.
"""

from . import adaptive_pool, avg_pool, global_pool, max_pool, stochastic_pool, unpool
from .spec import DIMENSIONALITIES, Direction, OpSpec

OPS: tuple[OpSpec, ...] = (
    max_pool.SPEC,
    avg_pool.SPEC,
    stochastic_pool.SPEC,
    global_pool.AVG_SPEC,
    global_pool.MAX_SPEC,
    adaptive_pool.AVG_SPEC,
    adaptive_pool.MAX_SPEC,
    unpool.SPEC,
)

BY_NAME: dict[str, OpSpec] = {spec.name: spec for spec in OPS}

__all__ = ["BY_NAME", "DIMENSIONALITIES", "Direction", "OPS", "OpSpec"]
