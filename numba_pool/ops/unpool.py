"""Max unpooling: the partial inverse of max pooling, each value put back at its index."""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np

from .. import _spec, reference
from ..backends import backend_for
from ..backends.contract import RoutedKernels
from . import _checks as checks
from . import _docs as docs
from . import _front as front
from .spec import Direction, OpSpec, SelfCheck

IntOrTuple = Union[int, Sequence[int]]


def _unpool_output_spatial(op, layout, input_spatial, kernel, stride, padding, output_size):
    """PyTorch's rule: (L - 1) * stride - 2 * padding + kernel, or output_size within a stride of it.

    ``output_size`` may be the spatial sizes alone or the whole output shape in the input's layout.
    """
    dims = layout.dims
    default = tuple((length - 1) * s - 2 * p + k for length, k, s, p in zip(input_spatial, kernel, stride, padding))
    if output_size is None:
        sizes = default
    else:
        whole_shape = len(layout.join(1, 1, default))
        if not isinstance(output_size, (tuple, list)) or not all(_spec.is_integer(v) for v in output_size):
            raise TypeError(f"{op}: output_size must be None or a tuple of ints; got {output_size!r}")
        if len(output_size) not in (dims, whole_shape):
            raise ValueError(
                f"{op}: output_size must hold the {dims} spatial sizes or the whole output shape "
                f"({whole_shape} sizes); got {output_size!r}"
            )
        sizes = tuple(int(v) for v in output_size)
        sizes = sizes if len(sizes) == dims else layout.split(sizes)[2]
        for axis, (size, expected, s) in enumerate(zip(sizes, default, stride)):
            if not expected - s < size < expected + s:
                raise ValueError(
                    f"{op}: output_size {tuple(output_size)} is invalid along spatial dim {axis}: "
                    f"it must lie strictly between {expected - s} and {expected + s}"
                )
    if min(sizes) < 1:
        raise ValueError(f"{op}: the output would be empty (spatial sizes {sizes}); check kernel_size, stride and padding")
    return sizes


def max_unpool(
    dims: int,
    x: np.ndarray,
    indices: np.ndarray,
    kernel_size: IntOrTuple,
    stride: Optional[IntOrTuple] = None,
    padding: IntOrTuple = 0,
    output_size: Optional[Sequence[int]] = None,
    *,
    channels_last: bool = False,
) -> np.ndarray:
    op = f"max_unpool{dims}d"
    channels_last = _spec.check_flag(channels_last, "channels_last", op)
    backend = backend_for(op, x=x, indices=indices)
    x, layout, (batch, channels, spatial) = front.global_input(
        backend, op, dims, x, channels_last, _spec.FLOAT_AND_INTEGER_DTYPES
    )
    kernel = _spec.size_tuple(kernel_size, dims, "kernel_size", op, minimum=1)
    stride = kernel if stride is None else _spec.size_tuple(stride, dims, "stride", op, minimum=1)
    padding = _spec.size_tuple(padding, dims, "padding", op, minimum=0)
    output_spatial = _unpool_output_spatial(op, layout, spatial, kernel, stride, padding, output_size)
    indices = front.checked_indices(backend, layout, indices, x, output_spatial, op, against="x")
    last = front.memory_is_channels_last(layout, x)  # the output follows the input's memory format
    out = layout.empty(batch, channels, output_spatial, x.dtype, last, front.allocator(backend, x))
    backend.max_unpool(layout.canonical(x), layout.canonical(indices), layout.canonical(out))
    return backend.export(out)


def forward_doc(dims: int) -> str:
    return f"""{dims}-D max unpooling, the partial inverse of ``max_pool{dims}d`` (as ``torch.nn.functional.max_unpool{dims}d``).

Each value of ``x`` is written at its index in a zero-filled output; when two
values share an index, the later one in input order wins.

Parameters
----------
x : numpy.ndarray
    Pooled values, (N, C) + spatial or unbatched; float16, float32, float64 or integers.
indices : numpy.ndarray
    Flat plane indices into the output, of ``x``'s shape (from ``return_indices=True``).
kernel_size, stride, padding
    As given to the pooling; they fix the default output size ``(L - 1) * stride - 2 * padding + kernel_size``.
output_size : tuple of int, optional
    The spatial output sizes (or the whole output shape), each within one stride of the default.
{docs.LAYOUT_DOC}

Returns
-------
numpy.ndarray
    The unpooled array, of ``x``'s dtype.

{docs.RAISES_DOC}

Examples
--------
>>> import numpy as np, numba_pool
>>> y, idx = numba_pool.max_pool1d(np.array([[[1.0, 3.0, 2.0, 0.0]]]), 2, return_indices=True)
>>> numba_pool.max_unpool1d(y, idx, 2)
array([[[0., 3., 2., 0.]]])
"""


# --------------------------------------------------------------------------- checks


def _selfcheck(functions, rng, put, to_host):
    x, kernel, stride, _ = checks.random_window(rng)
    pooled, indices = reference.max_pool(x, kernel, stride, (0, 0), (1, 1), False)
    got = functions.max_unpool2d(put(pooled), put(indices), kernel, stride, output_size=x.shape[2:])
    checks.expect_equal(to_host(got), reference.max_unpool(pooled, indices, x.shape[2:]), "max_unpool2d")


def _warm(functions, dims, x, channels_last):
    pooled, indices = getattr(functions, f"max_pool{dims}d")(x, 2, return_indices=True, channels_last=channels_last)
    getattr(functions, f"max_unpool{dims}d")(pooled, indices, 2, channels_last=channels_last)


def _device_checks(functions, channels_last):
    def unpool(x, gradient_like):
        pooled, indices = functions.max_pool2d(x, 2, return_indices=True, channels_last=channels_last)
        return functions.max_unpool2d(pooled, indices, 2, channels_last=channels_last)

    return {"max unpool": (unpool, "exact")}


SPEC = OpSpec(
    "max_unpool",
    Direction("", max_unpool, forward_doc),
    reference=reference.max_unpool,
    kernels=RoutedKernels,
    selfcheck=SelfCheck("max_unpool2d", _selfcheck),
    device_checks=_device_checks,
    warm=_warm,
)

SPECS = (SPEC,)
