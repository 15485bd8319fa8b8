"""Public pooling functions, generated from the op registry (:mod:`numba_pool.ops`).

Each op module writes its implementation once, ``max_pool(dims, x, kernel_size,
...)``; here it becomes ``max_pool1d``, ``max_pool2d`` and ``max_pool3d``, each
with its own name, exact signature (``inspect.signature`` and ``help()`` show
it) and docstring. A call with a dask array goes to :mod:`numba_pool.dask`,
which builds a lazy graph of NumPy calls.
"""

from __future__ import annotations

import importlib
from typing import Callable

import numpy as np

from .backends import is_dask_array
from .ops import DIMENSIONALITIES, OPS, Direction, OpSpec

# The adapter that runs calls on dask arrays. Imported by name on the first dask call: it builds on this
# module's public functions, so importing it here would make a cycle (and cost every user the dask import).
_DASK_ADAPTER = "numba_pool.dask"


def _public_function(spec: OpSpec, direction: Direction, dims: int) -> Callable:
    """The public function ``<op><dims>d<suffix>``: the op's implementation with ``dims`` fixed."""
    implementation = direction.implementation
    name = spec.public_name(dims, direction)

    def public(*args, **kwargs):
        if args:  # the common case: the lead array first, most often a NumPy array (checked cheaply)
            dask_call = type(args[0]) is not np.ndarray and is_dask_array(args[0])
        else:  # called by keyword; stochastic pooling's inference backward takes both x= and grad_output=
            dask_call = is_dask_array(kwargs.get("x")) or is_dask_array(kwargs.get("grad_output"))
        if dask_call:
            return importlib.import_module(_DASK_ADAPTER).call(spec, direction, dims, args, kwargs)
        return implementation(dims, *args, **kwargs)

    public.__name__ = public.__qualname__ = name
    public.__doc__ = direction.doc(dims)
    public.__signature__ = direction.public_signature()
    public.__annotations__ = {key: value for key, value in implementation.__annotations__.items() if key != "dims"}
    return public


def _generate() -> dict[str, Callable]:
    return {
        spec.public_name(dims, direction): _public_function(spec, direction, dims)
        for spec in OPS
        for direction in spec.directions
        for dims in DIMENSIONALITIES
    }


_FUNCTIONS = _generate()
globals().update(_FUNCTIONS)
__all__ = sorted(_FUNCTIONS)
