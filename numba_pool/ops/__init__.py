"""The registry: every op numba_pool has, one line per op module.

An op lives in its own module here (argument checks, plan, which kernels run,
docstrings, layer, checks, and its :class:`~numba_pool.ops.spec.OpSpec` in
the module's ``SPECS``), with its kernels in ``backends/cpu/`` and
``backends/cuda/`` and its oracle in ``reference.py``. Naming its module below
is all it takes for the public functions, layers, torch modules, dask
support, the backend contract and the checks to include it.
"""

import importlib

from .spec import DIMENSIONALITIES, Direction, OpSpec

# In the order the public API and the checks list them.
_OP_MODULES = (
    "max_pool",
    "avg_pool",
    "stochastic_pool",
    "global_pool",
    "adaptive_pool",
    "unpool",
    "lp_pool",
    "fractional_pool",
)

OPS: tuple[OpSpec, ...] = tuple(
    spec for module in _OP_MODULES for spec in importlib.import_module(f"{__name__}.{module}").SPECS
)

BY_NAME: dict[str, OpSpec] = {spec.name: spec for spec in OPS}

__all__ = ["BY_NAME", "DIMENSIONALITIES", "Direction", "OPS", "OpSpec"]
