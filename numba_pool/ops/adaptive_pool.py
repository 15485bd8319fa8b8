"""Adaptive pooling: the mean or the maximum of each of ``output_size`` bins per axis (PyTorch's bins)."""

from __future__ import annotations

from typing import Optional, Protocol, Sequence, Union

import numpy as np

from .. import _spec, reference
from ..backends import backend_for
from . import _checks as checks
from . import _docs as docs
from . import _front as front
from . import max_pool
from ._layer import LinearLayer, RoutedLayer
from .spec import CudaKernel, Direction, OpSpec, SelfCheck

IntOrTuple = Union[int, Sequence[int]]


def _adaptive_bins(spatial, output_spatial):
    """Canonical (D, H, W) bins arrays, with one bin of size 1 for the axes the op does not have."""
    missing = _spec.CANONICAL_SPATIAL_DIMS - len(spatial)
    lengths = (1,) * missing + tuple(spatial)
    counts = (1,) * missing + tuple(output_spatial)
    return tuple(_spec.adaptive_bins(length, count) for length, count in zip(lengths, counts)), lengths


def _adaptive_pool(kind, dims, x, output_size, return_indices, channels_last):
    op = f"adaptive_{kind}_pool{dims}d"
    channels_last = _spec.check_flag(channels_last, "channels_last", op)
    return_indices = _spec.check_flag(return_indices, "return_indices", op)
    backend = backend_for(op, x=x)
    accepted = _spec.FLOAT_AND_INTEGER_DTYPES if kind == "max" else _spec.FLOAT_DTYPES
    x, layout, (batch, channels, spatial) = front.global_input(backend, op, dims, x, channels_last, accepted)
    output_spatial = _spec.adaptive_output_size(output_size, spatial, op)
    last = front.memory_is_channels_last(layout, x)  # outputs follow the input's memory format
    allocate = front.allocator(backend, x)
    y = layout.empty(batch, channels, output_spatial, x.dtype, last, allocate)
    bins, _ = _adaptive_bins(spatial, output_spatial)  # adaptive kernels run on the canonical view in any memory
    if kind == "avg":
        backend.adaptive_avg_pool_forward(layout.canonical(x), bins, layout.canonical(y))
        return backend.export(y)
    indices = layout.empty(batch, channels, output_spatial, np.int64, last, allocate) if return_indices else None
    backend.adaptive_max_pool_forward(layout.canonical(x), bins, layout.canonical(y), front.canonical_or_none(indices, layout))
    return backend.export((y, indices) if return_indices else y)


def adaptive_avg_pool_backward(
    dims: int,
    grad_output: np.ndarray,
    input_shape: Sequence[int],
    *,
    channels_last: bool = False,
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    op = f"adaptive_avg_pool{dims}d_backward"
    channels_last = _spec.check_flag(channels_last, "channels_last", op)
    backend = backend_for(op, grad_output=grad_output, out=out)
    grad_output, input_shape, layout, spatial, output_spatial = front.gradient_against_input(
        backend, op, dims, grad_output, input_shape, channels_last
    )
    bins, lengths = _adaptive_bins(spatial, output_spatial)
    cover = tuple(_spec.covering_bins(b, length) for b, length in zip(bins, lengths))
    # A new gradient follows grad_output's memory format (the kernel takes canonical views of any memory).
    grad_input = front.gradient_output(backend, op, layout, input_shape, grad_output, out, grad_output)
    backend.adaptive_avg_pool_backward(layout.canonical(grad_output), bins, cover, layout.canonical(grad_input))
    return backend.export(grad_input)


def _forward_doc(dims: int, kind: str) -> str:
    spatial = docs.SPATIAL_NAMES[dims]
    what = "mean" if kind == "avg" else "maximum (first maximum on ties; NaN propagates: the last NaN wins)"
    dtypes = docs.FLOATS if kind == "avg" else "float16, float32, float64 or an integer dtype"
    indices = "" if kind == "avg" else f"""
return_indices : bool, default False
    Also return each maximum's flat plane index, for ``adaptive_max_pool{dims}d_backward``."""
    return f"""{dims}-D adaptive {kind} pooling: the {what} of each of ``output_size`` bins per axis.

Bin ``i`` of ``out`` along an axis of length ``L`` spans
``floor(i * L / out)`` to ``ceil((i + 1) * L / out)``, as in PyTorch; bins may overlap.

Parameters
----------
x : numpy.ndarray
    Input of shape (N, C) + {spatial} or unbatched (C,) + {spatial}; {dtypes}.
output_size : int or tuple of {dims} (int or None)
    Bins per spatial dim; ``None`` keeps that dim's input size.{indices}
{docs.LAYOUT_DOC}

Returns
-------
numpy.ndarray or tuple of numpy.ndarray
    The pooled array in the input's layout (and the indices when asked).

{docs.RAISES_DOC}

Examples
--------
>>> import numpy as np, numba_pool
>>> numba_pool.adaptive_{kind}_pool1d(np.array([[[1.0, 2.0, 3.0, 4.0, 5.0]]]), 2)
array([[[{"2., 4." if kind == "avg" else "3., 5."}]]])
"""


def avg_backward_doc(dims: int) -> str:
    return f"""Gradient of ``adaptive_avg_pool{dims}d``: each bin's gradient spread evenly over it.

The output size is read from ``grad_output``; each input element gathers from
the bins that hold it (deterministic).

Parameters
----------
grad_output : numpy.ndarray
    Gradient with respect to the pooled output; {docs.FLOATS}.
input_shape : tuple of int
    Shape of the forward input.
{docs.LAYOUT_DOC}
{docs.BACKWARD_OUT_DOC.format(shape="``input_shape``", read="``grad_output``")}

Returns
-------
numpy.ndarray
    Gradient with respect to the input.

{docs.RAISES_DOC}

Examples
--------
>>> import numpy as np, numba_pool
>>> grad = np.array([2.0, 4.0]).reshape((1, 1) + (1,) * {dims - 1} + (2,))
>>> numba_pool.adaptive_avg_pool{dims}d_backward(grad, (1, 1) + (1,) * {dims - 1} + (4,)).ravel()
array([1., 1., 2., 2.])
"""


OutputSize = Union[int, Sequence[Optional[int]]]


def adaptive_avg_pool(dims: int, x: np.ndarray, output_size: OutputSize, *, channels_last: bool = False) -> np.ndarray:
    return _adaptive_pool("avg", dims, x, output_size, False, channels_last)


def adaptive_max_pool(
    dims: int, x: np.ndarray, output_size: OutputSize, return_indices: bool = False, *, channels_last: bool = False
) -> Union[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    return _adaptive_pool("max", dims, x, output_size, return_indices, channels_last)


adaptive_max_pool_backward = front.routed_backward_implementation("adaptive_max_pool")


def avg_forward_doc(dims: int) -> str:
    return _forward_doc(dims, "avg")


def max_forward_doc(dims: int) -> str:
    return _forward_doc(dims, "max")


def max_backward_doc(dims: int) -> str:
    return max_pool.backward_doc(dims).replace("max_pool", "adaptive_max_pool")


class _AdaptiveLayer:
    def __init__(self, output_size: OutputSize, *, channels_last: bool = False, reuse_buffers: bool = False) -> None:
        super().__init__(channels_last, reuse_buffers)
        self.output_size = output_size


class AvgLayer(_AdaptiveLayer, LinearLayer):
    def pool_arguments(self) -> tuple:
        return (self.output_size,)  # the backward reads the sizes off its arrays: no backward_arguments


class MaxLayer(_AdaptiveLayer, RoutedLayer):
    def pool_arguments(self) -> tuple:
        return (self.output_size, True)


# --------------------------------------------------------------------------- checks


def _selfcheck(functions, rng, put, to_host):
    """Adaptive average and max pooling, on one line of ``numba-pool check``."""
    x = rng.standard_normal((2, 3, int(rng.integers(3, 9)), int(rng.integers(3, 9)))).astype(np.float32)
    size = tuple(int(n) for n in rng.integers(1, 6, 2))
    checks.expect_close(to_host(functions.adaptive_avg_pool2d(put(x), size)), reference.adaptive_avg_pool(x, size), "adaptive_avg_pool2d")
    values, indices = functions.adaptive_max_pool2d(put(x), size, return_indices=True)
    expected_values, expected_indices = reference.adaptive_max_pool(x, size)
    checks.expect_equal(to_host(values), expected_values, "adaptive_max_pool2d")
    checks.expect_equal(to_host(indices), expected_indices, "adaptive_max_pool2d indices")
    grad = rng.standard_normal(expected_values.shape).astype(np.float32)
    expected = reference.adaptive_avg_pool_backward(grad, x.shape[2:])
    checks.expect_close(to_host(functions.adaptive_avg_pool2d_backward(put(grad), x.shape)), expected, "adaptive_avg_pool2d_backward")


def _avg_device_checks(functions, channels_last):
    def forward(x, gradient_like):
        return functions.adaptive_avg_pool2d(x, (5, 3), channels_last=channels_last)

    def backward(x, gradient_like):
        return functions.adaptive_avg_pool2d_backward(gradient_like(forward(x, gradient_like)), x.shape, channels_last=channels_last)

    return {"adaptive avg fwd": (forward, "close"), "adaptive avg bwd": (backward, "close")}


def _max_device_checks(functions, channels_last):
    def forward(x, gradient_like):
        return functions.adaptive_max_pool2d(x, (5, 3), return_indices=True, channels_last=channels_last)

    return {"adaptive max fwd": (forward, "exact")}


def _avg_warm(functions, dims, x, channels_last):
    y = getattr(functions, f"adaptive_avg_pool{dims}d")(x, 3, channels_last=channels_last)
    getattr(functions, f"adaptive_avg_pool{dims}d_backward")(checks.warm_gradient(y), x.shape, channels_last=channels_last)


def _max_warm(functions, dims, x, channels_last):
    y, indices = getattr(functions, f"adaptive_max_pool{dims}d")(x, 3, return_indices=True, channels_last=channels_last)
    getattr(functions, f"adaptive_max_pool{dims}d_backward")(checks.warm_gradient(y), indices, x.shape, channels_last=channels_last)


def _ptx_max_forward(t):
    from ..backends.cuda import adaptive_pool as kernels

    return kernels._max_forward, (t.data, t.data, t.index, t.ranges, t.ranges, t.ranges, t.flag)


def _ptx_avg_forward(t):
    from ..backends.cuda import adaptive_pool as kernels

    return kernels._avg_forward, (t.data, t.data, t.ranges, t.ranges, t.ranges, t.per_axis, t.per_axis, t.per_axis, t.scalar)


def _ptx_avg_backward(t):
    from ..backends.cuda import adaptive_pool as kernels

    return kernels._avg_backward, (t.data, t.data, t.ranges, t.ranges, t.ranges, t.per_axis, t.per_axis, t.per_axis, t.scalar)


class AvgKernels(Protocol):
    """Adaptive average pooling's entries of the backend contract (canonical views; ``bins``: per axis a
    (2, output length) array of [start, stop); ``covers``: per axis a (2, input length) array of the bins
    [first, stop) containing each position)."""

    def adaptive_avg_pool_forward(self, x, bins, out) -> None:
        """The mean of each bin."""

    def adaptive_avg_pool_backward(self, grad_output, bins, covers, grad_input) -> None:
        """Each input element gathers the gradients of its bins, each divided by its bin's size."""


class MaxKernels(Protocol):
    """Adaptive max pooling's entries of the backend contract (its backward is ``routed_backward``)."""

    def adaptive_max_pool_forward(self, x, bins, out, indices) -> None:
        """The maximum of each bin into ``out``, its flat plane index into ``indices`` unless None."""


AVG_SPEC = OpSpec(
    "adaptive_avg_pool",
    Direction("", adaptive_avg_pool, avg_forward_doc),
    (Direction("_backward", adaptive_avg_pool_backward, avg_backward_doc),),
    layer="AdaptiveAvgPool",
    kernels=AvgKernels,
    saves="input_shape",
    selfcheck=SelfCheck("adaptive_avg/max_pool2d (forward, indices, backward)", _selfcheck),
    device_checks=_avg_device_checks,
    warm=_avg_warm,
    cuda_kernels=(
        CudaKernel("adaptive avg forward", _ptx_avg_forward),
        CudaKernel("adaptive avg backward", _ptx_avg_backward),
    ),
    reference=reference.adaptive_avg_pool,
    layer_class=AvgLayer,
    channels_last_output=(1, 2),
)
MAX_SPEC = OpSpec(
    "adaptive_max_pool",
    Direction("", adaptive_max_pool, max_forward_doc),
    (Direction("_backward", adaptive_max_pool_backward, max_backward_doc),),
    layer="AdaptiveMaxPool",
    kernels=MaxKernels,
    saves="indices",
    selfcheck=None,  # checked with adaptive average pooling, on its line
    device_checks=_max_device_checks,
    warm=_max_warm,
    cuda_kernels=(CudaKernel("adaptive max forward", _ptx_max_forward, integers=True),),
    reference=reference.adaptive_max_pool,
    layer_class=MaxLayer,
    channels_last_output=(1, 2),
)

SPECS = (AVG_SPEC, MAX_SPEC)
