"""Global pooling: the mean or the maximum of each whole (n, c) plane.

Two ops in one module of about 350 lines: they share their output shapes,
gradient checks, layer base and docstring text, which two modules would have
to import from a third.
"""

from __future__ import annotations

from typing import Optional, Protocol, Sequence, Union

import numpy as np

from .. import _spec, reference
from ..backends import backend_for
from . import _checks as checks
from . import _docs as docs
from . import _front as front
from ._layer import LinearLayer, RoutedLayer
from .spec import CudaKernel, Direction, OpSpec, SelfCheck

IntOrTuple = Union[int, Sequence[int]]


def _global_shapes(layout: _spec.Layout, batch: int, channels: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(shape with keepdims, shape without) of a global pooling's output."""
    kept = layout.join(batch, channels, (1,) * layout.dims)
    return kept, ((batch, channels) if layout.batched else (channels,))


def _global_gradient(backend, op, dims, grad_output, input_shape, channels_last):
    """Check a global pooling's gradient against input_shape; return it in the keepdims shape."""
    grad_output = backend.asarray(grad_output, "grad_output", op)
    _spec.check_dtype(grad_output, _spec.FLOAT_DTYPES, "grad_output", op)
    input_shape = _spec.shape_tuple(input_shape, dims, "input_shape", op, channels_last)
    layout = _spec.layout_of(input_shape, dims, channels_last, "input_shape", op)
    batch, channels, spatial = layout.split(input_shape)
    kept, flat = _global_shapes(layout, batch, channels)
    if grad_output.shape not in (kept, flat):
        raise ValueError(f"{op}: grad_output must have shape {flat} or {kept} for input_shape {input_shape}; got {grad_output.shape}")
    return grad_output.reshape(kept), input_shape, layout, spatial


def global_avg_pool(dims: int, x: np.ndarray, keepdims: bool = False, *, channels_last: bool = False) -> np.ndarray:
    op = f"global_avg_pool{dims}d"
    channels_last = _spec.check_flag(channels_last, "channels_last", op)
    keepdims = _spec.check_flag(keepdims, "keepdims", op)
    backend = backend_for(op, x=x)
    x, layout, (batch, channels, spatial) = front.global_input(backend, op, dims, x, channels_last, _spec.FLOAT_DTYPES)
    kept, flat = _global_shapes(layout, batch, channels)
    pooled = backend.empty((batch, channels), x.dtype, like=x)
    backend.global_avg_pool_forward(layout.canonical(x), pooled)
    return backend.export(pooled.reshape(kept if keepdims else flat))


def global_avg_pool_backward(
    dims: int,
    grad_output: np.ndarray,
    input_shape: Sequence[int],
    *,
    channels_last: bool = False,
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    op = f"global_avg_pool{dims}d_backward"
    channels_last = _spec.check_flag(channels_last, "channels_last", op)
    backend = backend_for(op, grad_output=grad_output, out=out)
    grad_output, input_shape, layout, spatial = _global_gradient(backend, op, dims, grad_output, input_shape, channels_last)
    batch, channels, _ = layout.split(input_shape)
    if out is None:
        last = channels > 1 and channels_last  # no memory to follow: use the layout the user works in
        grad_input = layout.empty(batch, channels, spatial, grad_output.dtype, last, front.allocator(backend, grad_output))
    else:
        grad_input = front.gradient_output(backend, op, layout, input_shape, grad_output, out, grad_output)
    backend.global_avg_pool_backward(grad_output.reshape(batch, channels), layout.canonical(grad_input))
    return backend.export(grad_input)


def global_max_pool(
    dims: int, x: np.ndarray, keepdims: bool = False, return_indices: bool = False, *, channels_last: bool = False
) -> Union[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    op = f"global_max_pool{dims}d"
    channels_last = _spec.check_flag(channels_last, "channels_last", op)
    keepdims = _spec.check_flag(keepdims, "keepdims", op)
    return_indices = _spec.check_flag(return_indices, "return_indices", op)
    backend = backend_for(op, x=x)
    accepted = _spec.FLOAT_AND_INTEGER_DTYPES
    x, layout, (batch, channels, spatial) = front.global_input(backend, op, dims, x, channels_last, accepted)
    kept, flat = _global_shapes(layout, batch, channels)
    last = front.memory_is_channels_last(layout, x)
    single = (1,) * dims
    allocate = front.allocator(backend, x)
    pooled = layout.empty(batch, channels, single, x.dtype, last, allocate)
    indices = layout.empty(batch, channels, single, np.int64, last, allocate) if return_indices else None
    backend.global_max_pool_forward(layout.canonical(x), layout.canonical(pooled), front.canonical_or_none(indices, layout))
    shape = kept if keepdims else flat
    return backend.export((pooled.reshape(shape), indices.reshape(shape)) if return_indices else pooled.reshape(shape))


def global_max_pool_backward(
    dims: int,
    grad_output: np.ndarray,
    indices: np.ndarray,
    input_shape: Sequence[int],
    *,
    channels_last: bool = False,
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    op = f"global_max_pool{dims}d_backward"
    channels_last = _spec.check_flag(channels_last, "channels_last", op)
    backend = backend_for(op, grad_output=grad_output, indices=indices, out=out)
    grad_output = backend.asarray(grad_output, "grad_output", op)
    grad_output_kept, input_shape, _, _ = _global_gradient(backend, op, dims, grad_output, input_shape, channels_last)
    indices = backend.asarray(indices, "indices", op)
    if indices.shape != grad_output.shape:
        raise ValueError(f"{op}: indices must have grad_output's shape {grad_output.shape}; got {indices.shape}")
    kept_indices = indices.reshape(grad_output_kept.shape)
    return front.routed_backward(op, dims, grad_output_kept, kept_indices, input_shape, channels_last, out)


def _forward_doc(dims: int, kind: str) -> str:
    spatial = docs.SPATIAL_NAMES[dims]
    what = "mean" if kind == "avg" else "maximum (first maximum on ties; NaN propagates: the last NaN wins)"
    dtypes = docs.FLOATS if kind == "avg" else "float16, float32, float64 or an integer dtype"
    indices = "" if kind == "avg" else f"""
return_indices : bool, default False
    Also return the flat plane index of each maximum, for ``global_max_pool{dims}d_backward``."""
    example = "[[2.5]]" if kind == "avg" else "[[4.]]"
    return f"""{dims}-D global {kind} pooling: the {what} of each whole (n, c) plane.

Parameters
----------
x : numpy.ndarray
    Input of shape (N, C) + {spatial} or unbatched (C,) + {spatial}; {dtypes}.
keepdims : bool, default False
    Keep size-1 spatial dims: (N, C) + (1,) * {dims} instead of (N, C).{indices}
{docs.LAYOUT_DOC}

Returns
-------
numpy.ndarray or tuple of numpy.ndarray
    Shape (N, C) or unbatched (C,), or with keepdims the input's layout with size-1 spatial dims.

Raises
------
TypeError
    For a non-array input or an unsupported dtype.
ValueError
    For a wrong number of dims or empty channel/spatial dims.

Examples
--------
>>> import numpy as np, numba_pool
>>> numba_pool.global_{kind}_pool{dims}d(np.arange(1.0, 5.0).reshape((1, 1) + (1,) * ({dims} - 1) + (4,)))
array({example})
"""


def _backward_doc(dims: int, kind: str) -> str:
    route = "spread evenly over its plane" if kind == "avg" else "sent to the plane's maximum"
    indices = "" if kind == "avg" else "\nindices : numpy.ndarray\n    The indices the forward call returned."
    read = "``grad_output``" if kind == "avg" else "``grad_output`` or ``indices``"
    return f"""Gradient of ``global_{kind}_pool{dims}d``: each output gradient {route}.

Parameters
----------
grad_output : numpy.ndarray
    Gradient of shape (N, C) / (C,), or the keepdims shape; {docs.FLOATS}.{indices}
input_shape : tuple of int
    Shape of the forward input.
{docs.LAYOUT_DOC}
{docs.BACKWARD_OUT_DOC.format(shape="``input_shape``", read=read)}

Returns
-------
numpy.ndarray
    Gradient with respect to the input (deterministic).

Raises
------
TypeError
    For a non-float gradient (or non-integer indices).
ValueError
    For shapes that do not match input_shape.

Examples
--------
>>> import numpy as np, numba_pool
>>> x = np.array([1.0, 4.0, 2.0, 3.0]).reshape((1, 1) + (1,) * {dims - 1} + (4,))
{_BACKWARD_EXAMPLES[kind].format(dims=dims)}
"""


_BACKWARD_EXAMPLES = {
    "avg": """>>> numba_pool.global_avg_pool{dims}d_backward(np.array([[2.0]]), x.shape).ravel()
array([0.5, 0.5, 0.5, 0.5])""",
    "max": """>>> y, idx = numba_pool.global_max_pool{dims}d(x, return_indices=True)
>>> numba_pool.global_max_pool{dims}d_backward(np.ones_like(y), idx, x.shape).ravel()
array([0., 1., 0., 0.])""",
}


def avg_forward_doc(dims: int) -> str:
    return _forward_doc(dims, "avg")


def avg_backward_doc(dims: int) -> str:
    return _backward_doc(dims, "avg")


def max_forward_doc(dims: int) -> str:
    return _forward_doc(dims, "max")


def max_backward_doc(dims: int) -> str:
    return _backward_doc(dims, "max")


class _GlobalLayer:
    """Autograd adapters pool with keepdims=True (their backward passes need the spatial dims) and drop them after."""

    def __init__(self, keepdims: bool = False, *, channels_last: bool = False, reuse_buffers: bool = False) -> None:
        super().__init__(channels_last, reuse_buffers)
        self.keepdims = keepdims

    def from_autograd_output(self, y):
        if self.keepdims:
            return y
        kept = (*y.shape[: -self.dims - 1], y.shape[-1]) if self.channels_last else y.shape[: -self.dims]
        return y.reshape(kept)


class AvgLayer(_GlobalLayer, LinearLayer):
    def pool_arguments(self) -> tuple:
        return (self.keepdims,)

    def autograd_arguments(self) -> tuple:
        return (True,)


class MaxLayer(_GlobalLayer, RoutedLayer):
    def pool_arguments(self) -> tuple:
        return (self.keepdims, True)

    def autograd_arguments(self) -> tuple:
        return (True, True)


# --------------------------------------------------------------------------- checks


def _selfcheck(functions, rng, put, to_host):
    """Global average and max pooling, on one line of ``numba-pool check``."""
    x = rng.standard_normal((2, 3, int(rng.integers(2, 9)), int(rng.integers(2, 9)))).astype(np.float32)
    expected_means = x.mean(axis=(2, 3), dtype=np.float64).astype(np.float32)
    checks.expect_close(to_host(functions.global_avg_pool2d(put(x))), expected_means, "global_avg_pool2d")
    checks.expect_equal(to_host(functions.global_max_pool2d(put(x))), x.max(axis=(2, 3)), "global_max_pool2d")
    grad = rng.standard_normal(x.shape[:2]).astype(np.float32)
    expected = np.broadcast_to((grad / (x.shape[2] * x.shape[3]))[:, :, None, None], x.shape)
    checks.expect_close(to_host(functions.global_avg_pool2d_backward(put(grad), x.shape)), expected, "global_avg_pool2d_backward")


def _avg_device_checks(functions, channels_last):
    def forward(x, gradient_like):
        return functions.global_avg_pool2d(x, channels_last=channels_last)

    def backward(x, gradient_like):
        return functions.global_avg_pool2d_backward(gradient_like(forward(x, gradient_like)), x.shape, channels_last=channels_last)

    return {"global avg fwd": (forward, "close"), "global avg bwd": (backward, "close")}


def _max_device_checks(functions, channels_last):
    def forward(x, gradient_like):
        return functions.global_max_pool2d(x, return_indices=True, channels_last=channels_last)

    return {"global max fwd": (forward, "exact")}


def _avg_warm(functions, dims, x, channels_last):
    y = getattr(functions, f"global_avg_pool{dims}d")(x, channels_last=channels_last)
    getattr(functions, f"global_avg_pool{dims}d_backward")(checks.warm_gradient(y), x.shape, channels_last=channels_last)


def _max_warm(functions, dims, x, channels_last):
    y, indices = getattr(functions, f"global_max_pool{dims}d")(x, return_indices=True, channels_last=channels_last)
    getattr(functions, f"global_max_pool{dims}d")(x, channels_last=channels_last)
    getattr(functions, f"global_max_pool{dims}d_backward")(checks.warm_gradient(y), indices, x.shape, channels_last=channels_last)


def _ptx_thread_means(t):
    from ..backends.cuda import global_pool as kernels

    return kernels._thread_means, (t.data, t.array(t.dtype, 2), t.scalar)


def _ptx_broadcast(t):
    from ..backends.cuda import global_pool as kernels

    return kernels._broadcast, (t.array(t.dtype, 2), t.data, t.scalar)


def _ptx_block_means(t):
    from ..backends.cuda import global_pool as kernels

    return kernels._block_means(t.dtype), (t.data, t.array(t.dtype, 2), t.scalar)


def _ptx_block_maxima(t):
    from ..backends.cuda import global_pool as kernels

    return kernels._block_maxima(t.dtype), (t.data, t.data, t.index, t.flag)


class AvgKernels(Protocol):
    """Global average pooling's entries of the backend contract (canonical views; ``out`` is (N, C))."""

    def global_avg_pool_forward(self, x, out) -> None:
        """The mean of each (n, c) plane."""

    def global_avg_pool_backward(self, grad_output, grad_input) -> None:
        """Each element of a plane gets its share of the plane's gradient (``grad_output`` is (N, C))."""


class MaxKernels(Protocol):
    """Global max pooling's entries of the backend contract (its backward is ``routed_backward``)."""

    def global_max_pool_forward(self, x, out, indices) -> None:
        """Each plane's maximum into ``out`` (N, C, 1, 1, 1), its flat index into ``indices`` unless None."""


AVG_SPEC = OpSpec(
    "global_avg_pool",
    Direction("", global_avg_pool, avg_forward_doc),
    (Direction("_backward", global_avg_pool_backward, avg_backward_doc),),
    layer="GlobalAvgPool",
    kernels=AvgKernels,
    saves="input_shape",
    selfcheck=SelfCheck("global_avg/max_pool2d (forward, backward)", _selfcheck),
    device_checks=_avg_device_checks,
    warm=_avg_warm,
    cuda_kernels=(
        CudaKernel("global avg forward (channels last)", _ptx_thread_means),
        CudaKernel("global avg backward", _ptx_broadcast),
        CudaKernel("global avg forward (blocks)", _ptx_block_means, per_element=False),
    ),
    reference=reference.global_avg_pool,
    layer_class=AvgLayer,  # outputs of spatial size 1 are both contiguous and channels-last: no channels_last_output
)
MAX_SPEC = OpSpec(
    "global_max_pool",
    Direction("", global_max_pool, max_forward_doc),
    (Direction("_backward", global_max_pool_backward, max_backward_doc),),
    layer="GlobalMaxPool",
    kernels=MaxKernels,
    saves="indices",
    selfcheck=None,  # checked with global average pooling, on its line
    device_checks=_max_device_checks,
    warm=_max_warm,
    cuda_kernels=(CudaKernel("global max forward (blocks)", _ptx_block_maxima, per_element=False, integers=True),),
    reference=reference.global_max_pool,
    layer_class=MaxLayer,
)

SPECS = (AVG_SPEC, MAX_SPEC)
