"""Public pooling functions: check arguments, pick the backend, run the kernel.

The 1-D, 2-D and 3-D variants of an op share one implementation; the public
functions (``max_pool2d`` and so on) are made by small factories so that each
has its own name, exact signature and docstring.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import numpy as np

from . import _rng, _spec
from ._dispatch import backend_for

IntOrTuple = Union[int, Sequence[int]]

# Stands in for the indices array when the caller does not want indices.
_NO_INDICES = np.empty((0, 0, 0, 0, 0), np.int64)

_SPATIAL_NAMES = {1: "(L)", 2: "(H, W)", 3: "(D, H, W)"}
_FLAT_INDEX = {1: "w", 2: "h * W + w", 3: "(d * H + h) * W + w"}


# --------------------------------------------------------------------------- max pooling


def _max_pool(dims, x, kernel_size, stride, padding, dilation, ceil_mode, return_indices, channels_last, out):
    op = f"max_pool{dims}d"
    channels_last = _spec.check_flag(channels_last, "channels_last", op)
    return_indices = _spec.check_flag(return_indices, "return_indices", op)
    backend = backend_for(op, x=x, out=out)
    x = _spec.host_array(x, "x", op)
    _spec.check_dtype(x, _spec.FLOAT_DTYPES + _spec.INTEGER_DTYPES, "x", op)
    plan = _spec.plan_window(op, dims, x.shape, kernel_size, stride, padding, dilation, ceil_mode, channels_last)
    y = _spec.output_array(out, plan.output_shape, x.dtype, op, x)
    indices = np.empty(plan.output_shape, np.int64) if return_indices else None
    kernel, stride, padding, dilation = plan.canonical_parameters()
    to_canonical = plan.layout.canonical
    canonical_indices = _NO_INDICES if indices is None else to_canonical(indices)
    backend.max_pool_forward(
        to_canonical(x), kernel, stride, padding, dilation, to_canonical(y), canonical_indices, return_indices
    )
    return (y, indices) if return_indices else y


def _checked_indices(indices, grad_output: np.ndarray, plane_size: int, op: str) -> np.ndarray:
    """``indices`` as int64, once its type, shape and values are known to be safe."""
    indices = _spec.host_array(indices, "indices", op)
    if indices.dtype.kind not in "iu":
        raise TypeError(f"{op}: indices must be an integer array (as returned with return_indices=True); got dtype {indices.dtype}")
    if indices.shape != grad_output.shape:
        raise ValueError(f"{op}: indices must have grad_output's shape {grad_output.shape}; got {indices.shape}")
    if indices.size and (indices.min() < 0 or indices.max() >= plane_size):
        raise ValueError(
            f"{op}: indices must lie in [0, {plane_size}), flat positions within one input plane; "
            f"got values from {indices.min()} to {indices.max()}"
        )
    return indices.astype(np.int64, copy=False)


def _routed_backward(op, dims, grad_output, indices, input_shape, channels_last):
    """Backward of every pooling that picks one element per window (max, stochastic, global max)."""
    channels_last = _spec.check_flag(channels_last, "channels_last", op)
    backend = backend_for(op, grad_output=grad_output, indices=indices)
    grad_output = _spec.host_array(grad_output, "grad_output", op)
    _spec.check_dtype(grad_output, _spec.FLOAT_DTYPES, "grad_output", op)
    input_shape = _spec.shape_tuple(input_shape, dims, "input_shape", op, channels_last)
    input_layout = _spec.layout_of(input_shape, dims, channels_last, "input_shape", op)
    output_layout = _spec.layout_of(grad_output.shape, dims, channels_last, "grad_output", op)
    batch, channels, spatial = input_layout.split(input_shape)
    if output_layout.batched != input_layout.batched or output_layout.split(grad_output.shape)[:2] != (batch, channels):
        raise ValueError(
            f"{op}: grad_output of shape {grad_output.shape} does not match input_shape {input_shape}: "
            "both must be batched or both unbatched, with the same batch and channel sizes"
        )
    indices = _checked_indices(indices, grad_output, int(np.prod(spatial)), op)
    grad_input = np.empty(input_shape, grad_output.dtype)
    to_canonical = input_layout.canonical
    backend.max_pool_backward(to_canonical(grad_output), to_canonical(indices), to_canonical(grad_input))
    return grad_input


# --------------------------------------------------------------------------- average pooling


def _avg_pool(dims, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, channels_last, out):
    op = f"avg_pool{dims}d"
    channels_last = _spec.check_flag(channels_last, "channels_last", op)
    count_include_pad = _spec.check_flag(count_include_pad, "count_include_pad", op)
    divisor = _spec.optional_nonzero_int(divisor_override, "divisor_override", op)
    backend = backend_for(op, x=x, out=out)
    x = _spec.host_array(x, "x", op)
    _spec.check_dtype(x, _spec.FLOAT_DTYPES, "x", op)
    plan = _spec.plan_window(op, dims, x.shape, kernel_size, stride, padding, 1, ceil_mode, channels_last)
    y = _spec.output_array(out, plan.output_shape, x.dtype, op, x)
    kernel, stride, padding, _ = plan.canonical_parameters()
    to_canonical = plan.layout.canonical
    backend.avg_pool_forward(to_canonical(x), kernel, stride, padding, count_include_pad, divisor, to_canonical(y))
    return y


def _avg_pool_backward(
    dims, grad_output, input_shape, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, channels_last
):
    op = f"avg_pool{dims}d_backward"
    channels_last = _spec.check_flag(channels_last, "channels_last", op)
    count_include_pad = _spec.check_flag(count_include_pad, "count_include_pad", op)
    divisor = _spec.optional_nonzero_int(divisor_override, "divisor_override", op)
    backend = backend_for(op, grad_output=grad_output)
    grad_output = _spec.host_array(grad_output, "grad_output", op)
    _spec.check_dtype(grad_output, _spec.FLOAT_DTYPES, "grad_output", op)
    input_shape = _spec.shape_tuple(input_shape, dims, "input_shape", op, channels_last)
    plan = _spec.plan_window(
        op, dims, input_shape, kernel_size, stride, padding, 1, ceil_mode, channels_last, input_name="input_shape"
    )
    if grad_output.shape != plan.output_shape:
        raise ValueError(
            f"{op}: grad_output must have the forward output's shape {plan.output_shape} for input_shape "
            f"{input_shape} and these window parameters; got {grad_output.shape}"
        )
    grad_input = np.empty(input_shape, grad_output.dtype)
    kernel, stride, padding, _ = plan.canonical_parameters()
    to_canonical = plan.layout.canonical
    backend.avg_pool_backward(
        to_canonical(grad_output), kernel, stride, padding, count_include_pad, divisor, to_canonical(grad_input)
    )
    return grad_input


# --------------------------------------------------------------------------- stochastic pooling


def _stochastic_pool(dims, x, kernel_size, stride, padding, ceil_mode, training, seed, return_indices, channels_last, out):
    op = f"stochastic_pool{dims}d"
    channels_last = _spec.check_flag(channels_last, "channels_last", op)
    training = _spec.check_flag(training, "training", op)
    return_indices = _spec.check_flag(return_indices, "return_indices", op)
    if return_indices and not training:
        raise ValueError(f"{op}: return_indices=True needs training=True (inference picks no element)")
    backend = backend_for(op, x=x, out=out)
    x = _spec.host_array(x, "x", op)
    _spec.check_dtype(x, _spec.FLOAT_DTYPES, "x", op)
    plan = _spec.plan_window(op, dims, x.shape, kernel_size, stride, padding, 1, ceil_mode, channels_last)
    y = _spec.output_array(out, plan.output_shape, x.dtype, op, x)
    seed = _rng.seed_from(seed, op)  # last, so that a refused call does not advance a Generator
    indices = np.empty(plan.output_shape, np.int64) if return_indices else None
    kernel, stride, padding, _ = plan.canonical_parameters()
    to_canonical = plan.layout.canonical
    canonical_indices = _NO_INDICES if indices is None else to_canonical(indices)
    backend.stochastic_pool_forward(
        to_canonical(x), kernel, stride, padding, seed, training, to_canonical(y), canonical_indices, return_indices
    )
    return (y, indices) if return_indices else y


def _stochastic_pool_inference_backward(dims, grad_output, x, kernel_size, stride, padding, ceil_mode, channels_last):
    op = f"stochastic_pool{dims}d_inference_backward"
    channels_last = _spec.check_flag(channels_last, "channels_last", op)
    backend = backend_for(op, grad_output=grad_output, x=x)
    x = _spec.host_array(x, "x", op)
    _spec.check_dtype(x, _spec.FLOAT_DTYPES, "x", op)
    grad_output = _spec.host_array(grad_output, "grad_output", op)
    _spec.check_dtype(grad_output, _spec.FLOAT_DTYPES, "grad_output", op)
    plan = _spec.plan_window(op, dims, x.shape, kernel_size, stride, padding, 1, ceil_mode, channels_last)
    if grad_output.shape != plan.output_shape:
        raise ValueError(f"{op}: grad_output must have the forward output's shape {plan.output_shape}; got {grad_output.shape}")
    grad_input = np.empty(x.shape, grad_output.dtype)
    kernel, stride, padding, _ = plan.canonical_parameters()
    to_canonical = plan.layout.canonical
    backend.stochastic_pool_inference_backward(
        to_canonical(x), to_canonical(grad_output), kernel, stride, padding, to_canonical(grad_input)
    )
    return grad_input


# --------------------------------------------------------------------------- global pooling
# A global pooling is a sliding-window pooling whose one window is the whole plane.


def _whole_plane(layout: _spec.Layout, spatial: tuple[int, ...]):
    """Canonical (kernel, stride, padding, dilation) for one window covering every spatial position."""
    missing = (1,) * (_spec.CANONICAL_SPATIAL_DIMS - layout.dims)
    kernel = missing + tuple(spatial)
    return kernel, kernel, (0, 0, 0), (1, 1, 1)


def _global_shapes(layout: _spec.Layout, batch: int, channels: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(shape with keepdims, shape without) of a global pooling's output."""
    kept = layout.join(batch, channels, (1,) * layout.dims)
    return kept, ((batch, channels) if layout.batched else (channels,))


def _global_input(op, dims, x, channels_last, accepted):
    x = _spec.host_array(x, "x", op)
    _spec.check_dtype(x, accepted, "x", op)
    layout = _spec.layout_of(x.shape, dims, channels_last, "x", op)
    return x, layout, layout.split(x.shape)


def _global_gradient(op, dims, grad_output, input_shape, channels_last):
    """Check a global pooling's gradient against input_shape; return it in the keepdims shape."""
    grad_output = _spec.host_array(grad_output, "grad_output", op)
    _spec.check_dtype(grad_output, _spec.FLOAT_DTYPES, "grad_output", op)
    input_shape = _spec.shape_tuple(input_shape, dims, "input_shape", op, channels_last)
    layout = _spec.layout_of(input_shape, dims, channels_last, "input_shape", op)
    batch, channels, spatial = layout.split(input_shape)
    kept, flat = _global_shapes(layout, batch, channels)
    if grad_output.shape not in (kept, flat):
        raise ValueError(f"{op}: grad_output must have shape {flat} or {kept} for input_shape {input_shape}; got {grad_output.shape}")
    return grad_output.reshape(kept), input_shape, layout, spatial


def _global_avg_pool(dims, x, keepdims, channels_last):
    op = f"global_avg_pool{dims}d"
    channels_last = _spec.check_flag(channels_last, "channels_last", op)
    keepdims = _spec.check_flag(keepdims, "keepdims", op)
    backend = backend_for(op, x=x)
    x, layout, (batch, channels, spatial) = _global_input(op, dims, x, channels_last, _spec.FLOAT_DTYPES)
    kept, flat = _global_shapes(layout, batch, channels)
    pooled = np.empty(kept, x.dtype)
    kernel, stride, padding, _ = _whole_plane(layout, spatial)
    backend.avg_pool_forward(layout.canonical(x), kernel, stride, padding, True, 0, layout.canonical(pooled))
    return pooled if keepdims else pooled.reshape(flat)


def _global_avg_pool_backward(dims, grad_output, input_shape, channels_last):
    op = f"global_avg_pool{dims}d_backward"
    channels_last = _spec.check_flag(channels_last, "channels_last", op)
    backend = backend_for(op, grad_output=grad_output)
    grad_output, input_shape, layout, spatial = _global_gradient(op, dims, grad_output, input_shape, channels_last)
    grad_input = np.empty(input_shape, grad_output.dtype)
    kernel, stride, padding, _ = _whole_plane(layout, spatial)
    backend.avg_pool_backward(layout.canonical(grad_output), kernel, stride, padding, True, 0, layout.canonical(grad_input))
    return grad_input


def _global_max_pool(dims, x, keepdims, return_indices, channels_last):
    op = f"global_max_pool{dims}d"
    channels_last = _spec.check_flag(channels_last, "channels_last", op)
    keepdims = _spec.check_flag(keepdims, "keepdims", op)
    return_indices = _spec.check_flag(return_indices, "return_indices", op)
    backend = backend_for(op, x=x)
    accepted = _spec.FLOAT_DTYPES + _spec.INTEGER_DTYPES
    x, layout, (batch, channels, spatial) = _global_input(op, dims, x, channels_last, accepted)
    kept, flat = _global_shapes(layout, batch, channels)
    pooled = np.empty(kept, x.dtype)
    indices = np.empty(kept, np.int64) if return_indices else None
    canonical_indices = _NO_INDICES if indices is None else layout.canonical(indices)
    backend.max_pool_forward(
        layout.canonical(x), *_whole_plane(layout, spatial), layout.canonical(pooled), canonical_indices, return_indices
    )
    shape = kept if keepdims else flat
    return (pooled.reshape(shape), indices.reshape(shape)) if return_indices else pooled.reshape(shape)


def _global_max_pool_backward(dims, grad_output, indices, input_shape, channels_last):
    op = f"global_max_pool{dims}d_backward"
    channels_last = _spec.check_flag(channels_last, "channels_last", op)
    grad_output_kept, input_shape, _, _ = _global_gradient(op, dims, grad_output, input_shape, channels_last)
    indices = _spec.host_array(indices, "indices", op)
    if indices.shape != np.shape(grad_output):
        raise ValueError(f"{op}: indices must have grad_output's shape {np.shape(grad_output)}; got {indices.shape}")
    return _routed_backward(op, dims, grad_output_kept, indices.reshape(grad_output_kept.shape), input_shape, channels_last)


# --------------------------------------------------------------------------- docstrings

_LAYOUT_DOC = """\
channels_last : bool, default False
    Read ``x`` as (N, *spatial, C) or unbatched (*spatial, C) instead of
    (N, C, *spatial) / (C, *spatial); outputs use the same layout."""

_WINDOW_DOC = """\
kernel_size : int or tuple of {dims} ints
    Window size.
stride : int or tuple of {dims} ints, optional
    Window step; ``None`` (default) means ``kernel_size``.
padding : int or tuple of {dims} ints, default 0
    Implicit padding on both sides, at most ``kernel_size // 2``."""

_RAISES_DOC = """\
Raises
------
TypeError
    For a non-array input, an unsupported dtype or a non-integer size.
ValueError
    For a wrong number of dims, sizes out of range, or an empty output."""


def _max_pool_doc(dims: int) -> str:
    spatial = _SPATIAL_NAMES[dims]
    return f"""{dims}-D max pooling, with PyTorch's semantics.

Each output element is the maximum of its window. Padding never wins; ties
go to the first maximum in window order and NaN propagates.

Parameters
----------
x : numpy.ndarray
    Input of shape (N, C) + {spatial} or unbatched (C,) + {spatial}; float32,
    float64 or any integer dtype (kept in the output). Any strides.
{_WINDOW_DOC.format(dims=dims)}
dilation : int or tuple of {dims} ints, default 1
    Spacing between window elements.
ceil_mode : bool, default False
    Round the output size up instead of down.
return_indices : bool, default False
    Also return the argmax of each window as int64, flat within its
    (n, c) plane ({_FLAT_INDEX[dims]}), for ``max_pool{dims}d_backward``.
{_LAYOUT_DOC}
out : numpy.ndarray, optional
    Preallocated output of the right shape and dtype.

Returns
-------
numpy.ndarray or tuple of numpy.ndarray
    The pooled array, and the indices when ``return_indices``.

{_RAISES_DOC}

Examples
--------
>>> import numpy as np, numba_pool
>>> x = np.random.default_rng(0).random((2, 3) + (8,) * {dims}, dtype=np.float32)
>>> numba_pool.max_pool{dims}d(x, 2).shape
{(2, 3) + (4,) * dims}
"""


def _max_pool_backward_doc(dims: int) -> str:
    return f"""Gradient of ``max_pool{dims}d``: each output gradient goes to its argmax.

Parameters
----------
grad_output : numpy.ndarray
    Gradient with respect to the pooled output; float32 or float64.
indices : numpy.ndarray
    The integer indices ``max_pool{dims}d(..., return_indices=True)`` returned.
input_shape : tuple of int
    Shape of the forward input.
{_LAYOUT_DOC}

Returns
-------
numpy.ndarray
    Gradient with respect to the input, of shape ``input_shape``. Windows
    that share an argmax add up, in a fixed order (deterministic).

Raises
------
TypeError
    For a non-float gradient or non-integer indices.
ValueError
    For shapes that do not match or indices outside the input plane.

Examples
--------
>>> import numpy as np, numba_pool
>>> x = np.array([[[1.0, 3.0, 2.0, 0.0]]])
>>> y, idx = numba_pool.max_pool1d(x, 2, return_indices=True)
>>> numba_pool.max_pool1d_backward(np.ones_like(y), idx, x.shape)
array([[[0., 1., 1., 0.]]])
"""


def _avg_pool_doc(dims: int) -> str:
    spatial = _SPATIAL_NAMES[dims]
    return f"""{dims}-D average pooling, with PyTorch's semantics.

Parameters
----------
x : numpy.ndarray
    Input of shape (N, C) + {spatial} or unbatched (C,) + {spatial}; float32
    or float64. Any strides.
{_WINDOW_DOC.format(dims=dims)}
ceil_mode : bool, default False
    Round the output size up instead of down.
count_include_pad : bool, default True
    Count padded zeros in the divisor.
divisor_override : int, optional
    Divide every window sum by this instead.
{_LAYOUT_DOC}
out : numpy.ndarray, optional
    Preallocated output of the right shape and dtype.

Returns
-------
numpy.ndarray
    The pooled array, of the input's dtype.

{_RAISES_DOC}

Examples
--------
>>> import numpy as np, numba_pool
>>> numba_pool.avg_pool1d(np.array([[[1.0, 3.0, 2.0, 4.0]]]), 2)
array([[[2., 3.]]])
"""


def _avg_pool_backward_doc(dims: int) -> str:
    return f"""Gradient of ``avg_pool{dims}d``: each window's gradient spread over it.

Takes the forward call's window parameters; each input element gathers
``grad / divisor`` from every window that covers it (deterministic).

Parameters
----------
grad_output : numpy.ndarray
    Gradient with respect to the pooled output; float32 or float64.
input_shape : tuple of int
    Shape of the forward input.
kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
    As given to ``avg_pool{dims}d``.
{_LAYOUT_DOC}

Returns
-------
numpy.ndarray
    Gradient with respect to the input, of shape ``input_shape``.

{_RAISES_DOC}

Examples
--------
>>> import numpy as np, numba_pool
>>> numba_pool.avg_pool1d_backward(np.array([[[2.0, 4.0]]]), (1, 1, 4), 2)
array([[[1., 1., 2., 2.]]])
"""


def _stochastic_pool_doc(dims: int) -> str:
    spatial = _SPATIAL_NAMES[dims]
    return f"""{dims}-D stochastic pooling (Zeiler & Fergus, 2013).

Weights are ``w = max(a, 0)`` over each window's in-input elements (padding is
never picked). In training one element is picked with probability
``w / sum(w)`` (uniformly when ``sum(w) == 0``) and returned; at inference
the expected value ``sum(w * a) / sum(w)`` is returned (the window mean when
``sum(w) == 0``). A NaN in a window makes its output NaN.

Randomness comes from a counter-based generator keyed by ``seed`` and each
output's logical position: the same seed gives the same picks whatever the
thread count and the layout.

Parameters
----------
x : numpy.ndarray
    Input of shape (N, C) + {spatial} or unbatched (C,) + {spatial}; float32
    or float64.
{_WINDOW_DOC.format(dims=dims)}
ceil_mode : bool, default False
    Round the output size up instead of down.
training : bool, default True
    Sample (True) or return the expected value (False).
seed : int, numpy.random.Generator or None
    ``None`` draws a fresh seed, so successive calls differ; a Generator
    gives one seed per call and advances.
return_indices : bool, default False
    Also return the picked elements' flat plane indices (training only), for
    ``stochastic_pool{dims}d_backward``.
{_LAYOUT_DOC}
out : numpy.ndarray, optional
    Preallocated output of the right shape and dtype.

Returns
-------
numpy.ndarray or tuple of numpy.ndarray
    The pooled array, and the indices when ``return_indices``.

{_RAISES_DOC}

Examples
--------
>>> import numpy as np, numba_pool
>>> window = np.array([[[1.0, 2.0, 3.0, 4.0]]])
>>> numba_pool.stochastic_pool1d(window, 4, training=False)
array([[[3.]]])
>>> value, index = numba_pool.stochastic_pool1d(window, 4, seed=0, return_indices=True)
>>> bool(value[0, 0, 0] == window[0, 0, index[0, 0, 0]])
True
"""


def _stochastic_pool_backward_doc(dims: int) -> str:
    return f"""Training gradient of ``stochastic_pool{dims}d``: each output gradient goes to the picked element.

For the gradient of the inference output (``training=False``) use
``stochastic_pool{dims}d_inference_backward``; ``StochasticPool{dims}d`` layers
(when available) choose between the two by their mode.

Parameters
----------
grad_output : numpy.ndarray
    Gradient with respect to the pooled output; float32 or float64.
indices : numpy.ndarray
    The integer indices ``stochastic_pool{dims}d(..., return_indices=True)`` returned.
input_shape : tuple of int
    Shape of the forward input.
{_LAYOUT_DOC}

Returns
-------
numpy.ndarray
    Gradient with respect to the input (deterministic).

Raises
------
TypeError
    For a non-float gradient or non-integer indices.
ValueError
    For shapes that do not match or indices outside the input plane.

Examples
--------
>>> import numpy as np, numba_pool
>>> x = np.array([[[0.0, 5.0, 0.0, 0.0]]])
>>> y, idx = numba_pool.stochastic_pool1d(x, 2, seed=1, return_indices=True)
>>> numba_pool.stochastic_pool1d_backward(np.ones_like(y), idx, x.shape)[0, 0, :2]
array([0., 1.])
"""


def _stochastic_pool_inference_backward_doc(dims: int) -> str:
    return f"""Exact gradient of ``stochastic_pool{dims}d(x, ..., training=False)``.

The inference output is ``sum(w * a) / sum(w)`` with ``w = max(a, 0)``; an
element with ``a > 0`` receives ``g * (2 a S - sum(w**2)) / S**2`` where
``S = sum(w)``, other elements 0; a window with ``S == 0`` (its mean) gives
each element ``g / count``.

Parameters
----------
grad_output : numpy.ndarray
    Gradient with respect to the inference output; float32 or float64.
x : numpy.ndarray
    The forward input (the gradient depends on it).
kernel_size, stride, padding, ceil_mode
    As given to ``stochastic_pool{dims}d``.
{_LAYOUT_DOC}

Returns
-------
numpy.ndarray
    Gradient with respect to ``x`` (deterministic).

{_RAISES_DOC}

Examples
--------
>>> import numpy as np, numba_pool
>>> numba_pool.stochastic_pool1d_inference_backward(np.ones((1, 1, 1)), np.array([[[1.0, 3.0]]]), 2)
array([[[-0.125,  0.875]]])
"""


def _global_pool_doc(dims: int, kind: str) -> str:
    spatial = _SPATIAL_NAMES[dims]
    what = "mean" if kind == "avg" else "maximum (first maximum on ties; NaN propagates)"
    dtypes = "float32 or float64" if kind == "avg" else "float32, float64 or an integer dtype"
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
{_LAYOUT_DOC}

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


def _global_pool_backward_doc(dims: int, kind: str) -> str:
    route = "spread evenly over its plane" if kind == "avg" else "sent to the plane's maximum"
    indices = "" if kind == "avg" else "\nindices : numpy.ndarray\n    The indices the forward call returned."
    return f"""Gradient of ``global_{kind}_pool{dims}d``: each output gradient {route}.

Parameters
----------
grad_output : numpy.ndarray
    Gradient of shape (N, C) / (C,), or the keepdims shape; float32 or float64.{indices}
input_shape : tuple of int
    Shape of the forward input.
{_LAYOUT_DOC}

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
"""


# --------------------------------------------------------------------------- public functions


def _named(function: Callable, name: str, doc: str) -> Callable:
    function.__name__ = function.__qualname__ = name
    function.__doc__ = doc
    return function


def _make_max_pool(dims: int) -> Callable:
    def max_pool(
        x: np.ndarray,
        kernel_size: IntOrTuple,
        stride: Optional[IntOrTuple] = None,
        padding: IntOrTuple = 0,
        dilation: IntOrTuple = 1,
        ceil_mode: bool = False,
        return_indices: bool = False,
        *,
        channels_last: bool = False,
        out: Optional[np.ndarray] = None,
    ):
        return _max_pool(dims, x, kernel_size, stride, padding, dilation, ceil_mode, return_indices, channels_last, out)

    return _named(max_pool, f"max_pool{dims}d", _max_pool_doc(dims))


def _make_max_pool_backward(dims: int) -> Callable:
    def max_pool_backward(
        grad_output: np.ndarray, indices: np.ndarray, input_shape: Sequence[int], *, channels_last: bool = False
    ) -> np.ndarray:
        return _routed_backward(f"max_pool{dims}d_backward", dims, grad_output, indices, input_shape, channels_last)

    return _named(max_pool_backward, f"max_pool{dims}d_backward", _max_pool_backward_doc(dims))


def _make_avg_pool(dims: int) -> Callable:
    def avg_pool(
        x: np.ndarray,
        kernel_size: IntOrTuple,
        stride: Optional[IntOrTuple] = None,
        padding: IntOrTuple = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: Optional[int] = None,
        *,
        channels_last: bool = False,
        out: Optional[np.ndarray] = None,
    ) -> np.ndarray:
        return _avg_pool(
            dims, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, channels_last, out
        )

    return _named(avg_pool, f"avg_pool{dims}d", _avg_pool_doc(dims))


def _make_avg_pool_backward(dims: int) -> Callable:
    def avg_pool_backward(
        grad_output: np.ndarray,
        input_shape: Sequence[int],
        kernel_size: IntOrTuple,
        stride: Optional[IntOrTuple] = None,
        padding: IntOrTuple = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: Optional[int] = None,
        *,
        channels_last: bool = False,
    ) -> np.ndarray:
        return _avg_pool_backward(
            dims, grad_output, input_shape, kernel_size, stride, padding, ceil_mode, count_include_pad,
            divisor_override, channels_last,
        )

    return _named(avg_pool_backward, f"avg_pool{dims}d_backward", _avg_pool_backward_doc(dims))


def _make_stochastic_pool(dims: int) -> Callable:
    def stochastic_pool(
        x: np.ndarray,
        kernel_size: IntOrTuple,
        stride: Optional[IntOrTuple] = None,
        padding: IntOrTuple = 0,
        ceil_mode: bool = False,
        training: bool = True,
        seed: Union[int, np.random.Generator, None] = None,
        return_indices: bool = False,
        *,
        channels_last: bool = False,
        out: Optional[np.ndarray] = None,
    ):
        return _stochastic_pool(
            dims, x, kernel_size, stride, padding, ceil_mode, training, seed, return_indices, channels_last, out
        )

    return _named(stochastic_pool, f"stochastic_pool{dims}d", _stochastic_pool_doc(dims))


def _make_stochastic_pool_backward(dims: int) -> Callable:
    def stochastic_pool_backward(
        grad_output: np.ndarray, indices: np.ndarray, input_shape: Sequence[int], *, channels_last: bool = False
    ) -> np.ndarray:
        op = f"stochastic_pool{dims}d_backward"
        return _routed_backward(op, dims, grad_output, indices, input_shape, channels_last)

    return _named(stochastic_pool_backward, f"stochastic_pool{dims}d_backward", _stochastic_pool_backward_doc(dims))


def _make_stochastic_pool_inference_backward(dims: int) -> Callable:
    def stochastic_pool_inference_backward(
        grad_output: np.ndarray,
        x: np.ndarray,
        kernel_size: IntOrTuple,
        stride: Optional[IntOrTuple] = None,
        padding: IntOrTuple = 0,
        ceil_mode: bool = False,
        *,
        channels_last: bool = False,
    ) -> np.ndarray:
        return _stochastic_pool_inference_backward(
            dims, grad_output, x, kernel_size, stride, padding, ceil_mode, channels_last
        )

    name = f"stochastic_pool{dims}d_inference_backward"
    return _named(stochastic_pool_inference_backward, name, _stochastic_pool_inference_backward_doc(dims))


def _make_global_avg_pool(dims: int) -> Callable:
    def global_avg_pool(x: np.ndarray, keepdims: bool = False, *, channels_last: bool = False) -> np.ndarray:
        return _global_avg_pool(dims, x, keepdims, channels_last)

    return _named(global_avg_pool, f"global_avg_pool{dims}d", _global_pool_doc(dims, "avg"))


def _make_global_avg_pool_backward(dims: int) -> Callable:
    def global_avg_pool_backward(
        grad_output: np.ndarray, input_shape: Sequence[int], *, channels_last: bool = False
    ) -> np.ndarray:
        return _global_avg_pool_backward(dims, grad_output, input_shape, channels_last)

    return _named(global_avg_pool_backward, f"global_avg_pool{dims}d_backward", _global_pool_backward_doc(dims, "avg"))


def _make_global_max_pool(dims: int) -> Callable:
    def global_max_pool(x: np.ndarray, keepdims: bool = False, return_indices: bool = False, *, channels_last: bool = False):
        return _global_max_pool(dims, x, keepdims, return_indices, channels_last)

    return _named(global_max_pool, f"global_max_pool{dims}d", _global_pool_doc(dims, "max"))


def _make_global_max_pool_backward(dims: int) -> Callable:
    def global_max_pool_backward(
        grad_output: np.ndarray, indices: np.ndarray, input_shape: Sequence[int], *, channels_last: bool = False
    ) -> np.ndarray:
        return _global_max_pool_backward(dims, grad_output, indices, input_shape, channels_last)

    return _named(global_max_pool_backward, f"global_max_pool{dims}d_backward", _global_pool_backward_doc(dims, "max"))


max_pool1d, max_pool2d, max_pool3d = (_make_max_pool(d) for d in (1, 2, 3))
max_pool1d_backward, max_pool2d_backward, max_pool3d_backward = (_make_max_pool_backward(d) for d in (1, 2, 3))
avg_pool1d, avg_pool2d, avg_pool3d = (_make_avg_pool(d) for d in (1, 2, 3))
avg_pool1d_backward, avg_pool2d_backward, avg_pool3d_backward = (_make_avg_pool_backward(d) for d in (1, 2, 3))
stochastic_pool1d, stochastic_pool2d, stochastic_pool3d = (_make_stochastic_pool(d) for d in (1, 2, 3))
stochastic_pool1d_backward, stochastic_pool2d_backward, stochastic_pool3d_backward = (
    _make_stochastic_pool_backward(d) for d in (1, 2, 3)
)
stochastic_pool1d_inference_backward, stochastic_pool2d_inference_backward, stochastic_pool3d_inference_backward = (
    _make_stochastic_pool_inference_backward(d) for d in (1, 2, 3)
)
global_avg_pool1d, global_avg_pool2d, global_avg_pool3d = (_make_global_avg_pool(d) for d in (1, 2, 3))
global_avg_pool1d_backward, global_avg_pool2d_backward, global_avg_pool3d_backward = (
    _make_global_avg_pool_backward(d) for d in (1, 2, 3)
)
global_max_pool1d, global_max_pool2d, global_max_pool3d = (_make_global_max_pool(d) for d in (1, 2, 3))
global_max_pool1d_backward, global_max_pool2d_backward, global_max_pool3d_backward = (
    _make_global_max_pool_backward(d) for d in (1, 2, 3)
)
