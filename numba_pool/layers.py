"""Pooling layers for NumPy training loops.

Each layer holds its parameters, remembers in ``forward`` what its
``backward`` needs, and calls the functions of :mod:`numba_pool.functional`.

>>> import numpy as np, numba_pool
>>> pool = numba_pool.MaxPool2d(2)
>>> y = pool(np.arange(16.0).reshape(1, 1, 4, 4))
>>> pool.backward(np.ones_like(y))[0, 0, 1]
array([0., 1., 0., 1.])

Every layer takes ``reuse_buffers=False``. With ``True``, ``backward`` writes
into the array it returned last time (as ``out=``) when the new gradient has
the same shape, dtype and memory layout, so a training loop stops paying for a
fresh input-sized array (and its page faults) each step. The price: the
previous gradient is overwritten, so a caller that keeps it must copy it.
It is opt-in because the layer cannot tell whether the caller still holds
that array (a reference count cannot: a loop's own variable still holds the
last gradient when the next backward runs).
"""

from __future__ import annotations

from typing import Sequence, Union

from . import functional
from .ops import DIMENSIONALITIES, OPS, OpSpec

IntOrTuple = Union[int, Sequence[int]]


def _layer_class(spec: OpSpec, dims: int) -> type:
    """The layer class ``<layer><dims>d`` (e.g. MaxPool2d): the op module's layer fixed to ``dims`` spatial dims."""
    base, name = spec.layer_class, f"{spec.layer}{dims}d"
    if base.saves != spec.saves:
        raise TypeError(f"{name}: the layer saves {base.saves!r} for its backward but the op's spec says {spec.saves!r}")
    doc = (
        f"{dims}-D {spec.layer} layer: ``forward(x)`` (or calling it) and ``backward(grad_output)``.\n\n"
        f"Parameters are those of ``numba_pool.{spec.name}{dims}d``; see its docstring. With\n"
        "``reuse_buffers=True`` (default False), ``backward`` writes into the gradient array it\n"
        "returned last time when shape, dtype and memory layout allow: copy a gradient you keep.\n\n"
        + (base.__doc__ or "")
    )
    # The public functions (not the implementations), so that a layer runs dask arrays as they do.
    functions = {direction.suffix: getattr(functional, spec.public_name(dims, direction)) for direction in spec.directions}
    attributes = {"dims": dims, "functions": functions, "__doc__": doc, "__module__": __name__}
    return type(name, (base,), attributes)


def _generate() -> dict[str, type]:
    return {
        f"{spec.layer}{dims}d": _layer_class(spec, dims)
        for spec in OPS
        if spec.layer is not None
        for dims in DIMENSIONALITIES
    }


_LAYERS = _generate()
globals().update(_LAYERS)
__all__ = list(_LAYERS)
