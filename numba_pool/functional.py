"""Public pooling functions: check arguments, pick the backend, run the kernel.

The 1-D, 2-D and 3-D variants of an op share one implementation; the public
functions (``max_pool2d`` and so on) are made by small factories so that each
has its own name, exact signature and docstring.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Optional, Sequence, Union

import numpy as np

from . import _docs, _rng, _spec, cpu
from .cpu._common import row_blocks
from ._dispatch import backend_for, is_dask_array

IntOrTuple = Union[int, Sequence[int]]

# Stands in for the indices array when the caller does not want indices.
_NO_INDICES = np.zeros((1, 1, 1, 1, 1), np.int64)


def _kernel(backend, name: str, channels_last_memory: bool):
    """The kernel ``name`` for this memory layout (channels-last kernels vectorise over channels)."""
    return getattr(backend, f"{name}_channels_last" if channels_last_memory else name)


def _views(layout: _spec.Layout, channels_last_memory: bool, *arrays):
    """Each array as the kernel sees it: canonical, then channels moved last for channels-last memory."""
    return [_spec.kernel_view(layout.canonical(a), channels_last_memory) for a in arrays]


def _memory_is_channels_last(layout: _spec.Layout, array: np.ndarray) -> bool:
    return _spec.channels_innermost(layout.canonical(array))


def _allocator(backend, like) -> Callable:
    """``allocate(shape, dtype)`` for new arrays of the backend and array family of ``like``."""
    return np.empty if backend is cpu else functools.partial(backend.empty, like=like)


def _new_output(backend, plan, dtype, channels_last_memory: bool, like):
    allocate = _allocator(backend, like)
    return plan.layout.empty(plan.batch, plan.channels, plan.output_spatial, dtype, channels_last_memory, allocate)


def _gradient_output(backend, op, layout, input_shape, grad_output, out, memory_like, also_read=()):
    """The array a backward pass writes, and whether its memory is channels-last (the kernel follows it).

    Without ``out``, a new array whose memory follows ``memory_like``'s. With it, ``out`` once checked: the
    input's shape, grad_output's dtype, and no element shared with grad_output or with the arrays of
    ``also_read`` ((name, array) pairs), which the kernel reads while it writes.
    """
    if out is None:
        last = _memory_is_channels_last(layout, memory_like)
        allocate = _allocator(backend, memory_like)
        return layout.empty(*layout.split(input_shape), grad_output.dtype, last, allocate), last
    out = backend.check_out(out, input_shape, grad_output.dtype, op, grad_output, "grad_output", also_read)
    return out, _memory_is_channels_last(layout, out)


# --------------------------------------------------------------------------- max pooling


def _max_pool(dims, x, kernel_size, stride, padding, dilation, ceil_mode, return_indices, channels_last, out):
    op = f"max_pool{dims}d"
    channels_last = _spec.check_flag(channels_last, "channels_last", op)
    return_indices = _spec.check_flag(return_indices, "return_indices", op)
    backend = backend_for(op, x=x, out=out)
    x = backend.asarray(x, "x", op)
    _spec.check_dtype(x, _spec.FLOAT_AND_INTEGER_DTYPES, "x", op)
    plan = _spec.plan_window(op, dims, x.shape, kernel_size, stride, padding, dilation, ceil_mode, channels_last)
    return _run_max_pool(backend, op, x, plan, return_indices, out)


def _run_max_pool(backend, op, x, plan, return_indices, out=None):
    """Max pooling of a checked ``x`` as ``plan`` says (the whole plan, or a dask block's part of one)."""
    last = _memory_is_channels_last(plan.layout, x)
    y = _new_output(backend, plan, x.dtype, last, x) if out is None else backend.check_out(out, plan.output_shape, x.dtype, op, x)
    indices = _new_output(backend, plan, np.int64, last, x) if return_indices else None
    x_view, y_view = _views(plan.layout, last, x, y)
    indices_view = _views(plan.layout, last, indices)[0] if return_indices else _NO_INDICES
    if last:
        backend.max_pool_forward_channels_last(x_view, *plan.canonical_parameters, y_view, indices_view, return_indices)
    else:
        blocks = row_blocks(plan.batch * plan.channels * math.prod(plan.output_spatial[:-1]))
        backend.max_pool_forward(x_view, *plan.canonical_parameters, blocks, y_view, indices_view, return_indices)
    return backend.export((y, indices) if return_indices else y)


def _checked_indices(backend, layout, indices, values, spatial, op: str, against: str = "grad_output"):
    """``indices`` ready for the kernels, once its type, shape (that of ``values``) and values are known to be safe.

    ``spatial`` holds the sizes of the planes the indices point into.
    """
    indices = backend.asarray(indices, "indices", op)
    if indices.dtype.kind not in "iu":
        raise TypeError(f"{op}: indices must be an integer array (as returned with return_indices=True); got dtype {indices.dtype}")
    if indices.shape != values.shape:
        raise ValueError(f"{op}: indices must have {against}'s shape {values.shape}; got {indices.shape}")
    plane_size = math.prod(spatial)
    if indices.size:
        canonical_plane = (1,) * (_spec.CANONICAL_SPATIAL_DIMS - len(spatial)) + tuple(spatial)
        low, high = backend.index_range(layout.canonical(indices), canonical_plane)
        if low < 0 or high >= plane_size:
            raise ValueError(
                f"{op}: indices must lie in [0, {plane_size}), flat positions within one input plane; "
                f"got values from {low} to {high}"
            )
    return backend.as_int64(indices)


def _gradient_against_input(backend, op, dims, grad_output, input_shape, channels_last):
    """Check a float gradient whose batch and channel sizes must match ``input_shape``.

    Returns (grad_output, input_shape, layout, input spatial sizes, output spatial sizes).
    """
    grad_output = backend.asarray(grad_output, "grad_output", op)
    _spec.check_dtype(grad_output, _spec.FLOAT_DTYPES, "grad_output", op)
    return (grad_output, *_gradient_plan(op, dims, grad_output.shape, input_shape, channels_last))


@_spec.memoized
def _gradient_plan(op, dims, grad_shape, input_shape, channels_last):
    """The shape checks of ``_gradient_against_input``, done once per call signature."""
    input_shape = _spec.shape_tuple(input_shape, dims, "input_shape", op, channels_last)
    layout = _spec.layout_of(input_shape, dims, channels_last, "input_shape", op)
    output_layout = _spec.layout_of(grad_shape, dims, channels_last, "grad_output", op)
    batch, channels, spatial = layout.split(input_shape)
    out_batch, out_channels, output_spatial = output_layout.split(grad_shape)
    if output_layout.batched != layout.batched or (out_batch, out_channels) != (batch, channels):
        raise ValueError(
            f"{op}: grad_output of shape {grad_shape} does not match input_shape {input_shape}: "
            "both must be batched or both unbatched, with the same batch and channel sizes"
        )
    return input_shape, layout, spatial, output_spatial


def _routed_backward(op, dims, grad_output, indices, input_shape, channels_last, out=None):
    """Backward of every pooling that picks one element per window (max, stochastic, global/adaptive max)."""
    channels_last = _spec.check_flag(channels_last, "channels_last", op)
    backend = backend_for(op, grad_output=grad_output, indices=indices, out=out)
    grad_output, input_shape, layout, spatial, _ = _gradient_against_input(
        backend, op, dims, grad_output, input_shape, channels_last
    )
    indices = _checked_indices(backend, layout, indices, grad_output, spatial, op)
    grad_input, last = _gradient_output(
        backend, op, layout, input_shape, grad_output, out, grad_output, also_read=(("indices", indices),)
    )
    views = _views(layout, last, grad_output, indices, grad_input)
    if backend is cpu and all(view.flags.c_contiguous for view in views):  # a faster CPU kernel for plain memory
        backend.max_pool_backward_flat(*(_images_positions_channels(view, last) for view in views))
    else:
        _kernel(backend, "max_pool_backward", last)(*views)
    return backend.export(grad_input)


def _images_positions_channels(view: np.ndarray, channels_last_memory: bool) -> np.ndarray:
    """A contiguous kernel view as (images, positions, channels), without a copy."""
    if channels_last_memory:  # (N, D, H, W, C)
        return view.reshape(view.shape[0], math.prod(view.shape[1:-1]), view.shape[-1])
    return view.reshape(view.shape[0] * view.shape[1], math.prod(view.shape[2:]), 1)


# --------------------------------------------------------------------------- average pooling


def _avg_pool(dims, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, channels_last, out):
    op = f"avg_pool{dims}d"
    channels_last = _spec.check_flag(channels_last, "channels_last", op)
    count_include_pad = _spec.check_flag(count_include_pad, "count_include_pad", op)
    divisor = _spec.optional_nonzero_int(divisor_override, "divisor_override", op)
    backend = backend_for(op, x=x, out=out)
    x = backend.asarray(x, "x", op)
    _spec.check_dtype(x, _spec.FLOAT_DTYPES, "x", op)
    plan = _spec.plan_window(op, dims, x.shape, kernel_size, stride, padding, 1, ceil_mode, channels_last)
    return _run_avg_pool(backend, op, x, plan, _spec.avg_scales(plan, count_include_pad, divisor), out)


def _run_avg_pool(backend, op, x, plan, scales, out=None):
    """Average pooling of a checked ``x`` as ``plan`` says, with the per-axis ``scales`` of its windows."""
    last = _memory_is_channels_last(plan.layout, x)
    y = _new_output(backend, plan, x.dtype, last, x) if out is None else backend.check_out(out, plan.output_shape, x.dtype, op, x)
    kernel, stride, padding, _ = plan.canonical_parameters
    x_view, y_view = _views(plan.layout, last, x, y)
    if last:
        backend.avg_pool_forward_channels_last(x_view, kernel, stride, padding, scales, y_view)
    else:
        blocks = row_blocks(plan.batch * plan.channels * math.prod(plan.output_spatial[:-1]))
        backend.avg_pool_forward(x_view, kernel, stride, padding, scales, blocks, y_view)
    return backend.export(y)


def _avg_pool_backward(
    dims, grad_output, input_shape, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override,
    channels_last, out,
):
    op = f"avg_pool{dims}d_backward"
    channels_last = _spec.check_flag(channels_last, "channels_last", op)
    count_include_pad = _spec.check_flag(count_include_pad, "count_include_pad", op)
    divisor = _spec.optional_nonzero_int(divisor_override, "divisor_override", op)
    backend = backend_for(op, grad_output=grad_output, out=out)
    grad_output = backend.asarray(grad_output, "grad_output", op)
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
    grad_input, last = _gradient_output(backend, op, plan.layout, input_shape, grad_output, out, grad_output)
    scales = _spec.avg_scales(plan, count_include_pad, divisor)
    grad_view, grad_input_view = _views(plan.layout, last, grad_output, grad_input)
    if last:
        backend.avg_pool_backward_channels_last(grad_view, plan.covering_windows, scales, grad_input_view)
    else:
        rows = plan.batch * plan.channels * math.prod(plan.input_spatial[:-1])
        backend.avg_pool_backward(grad_view, plan.covering_windows, scales, row_blocks(rows), grad_input_view)
    return backend.export(grad_input)


# --------------------------------------------------------------------------- stochastic pooling


def _stochastic_pool(dims, x, kernel_size, stride, padding, ceil_mode, training, seed, return_indices, channels_last, out):
    op = f"stochastic_pool{dims}d"
    channels_last = _spec.check_flag(channels_last, "channels_last", op)
    training = _spec.check_flag(training, "training", op)
    return_indices = _spec.check_flag(return_indices, "return_indices", op)
    if return_indices and not training:
        raise ValueError(f"{op}: return_indices=True needs training=True (inference picks no element)")
    backend = backend_for(op, x=x, out=out)
    x = backend.asarray(x, "x", op)
    _spec.check_dtype(x, _spec.FLOAT_DTYPES, "x", op)
    plan = _spec.plan_window(op, dims, x.shape, kernel_size, stride, padding, 1, ceil_mode, channels_last)
    y = None if out is None else backend.check_out(out, plan.output_shape, x.dtype, op, x)
    # Last, so that a refused call does not advance a Generator. Inference draws nothing, so without a
    # seed it skips the fresh generator (tens of microseconds of OS entropy per call).
    seed = _rng.seed_from(seed, op) if training or seed is not None else np.uint64(0)
    draws = (seed, (0,) * 5, _canonical_output_shape(plan))
    return _run_stochastic_pool(backend, x, plan, draws, training, return_indices, y)


def _canonical_output_shape(plan) -> tuple[int, ...]:
    """The (N, C, D, H, W) shape of a plan's output."""
    missing = (1,) * (_spec.CANONICAL_SPATIAL_DIMS - plan.layout.dims)
    return (plan.batch, plan.channels, *missing, *plan.output_spatial)


def _run_stochastic_pool(backend, x, plan, draws, training, return_indices, out=None):
    """Stochastic pooling of a checked ``x`` as ``plan`` says; ``draws`` = (seed, origin, whole output shape)."""
    last = _memory_is_channels_last(plan.layout, x)
    y = _new_output(backend, plan, x.dtype, last, x) if out is None else out
    indices = _new_output(backend, plan, np.int64, last, x) if return_indices else None
    kernel, stride, padding, _ = plan.canonical_parameters
    x_view, y_view = _views(plan.layout, last, x, y)
    indices_view = _views(plan.layout, last, indices)[0] if return_indices else _NO_INDICES
    if last:
        blocks = row_blocks(plan.batch * math.prod(plan.output_spatial[:-1]))
        backend.stochastic_pool_forward_channels_last(
            x_view, kernel, stride, padding, draws, training, blocks, y_view, indices_view, return_indices
        )
    else:
        backend.stochastic_pool_forward(x_view, kernel, stride, padding, draws, training, y_view, indices_view, return_indices)
    return backend.export((y, indices) if return_indices else y)


def _stochastic_pool_inference_backward(dims, grad_output, x, kernel_size, stride, padding, ceil_mode, channels_last, out):
    op = f"stochastic_pool{dims}d_inference_backward"
    channels_last = _spec.check_flag(channels_last, "channels_last", op)
    backend = backend_for(op, grad_output=grad_output, x=x, out=out)
    x = backend.asarray(x, "x", op)
    _spec.check_dtype(x, _spec.FLOAT_DTYPES, "x", op)
    grad_output = backend.asarray(grad_output, "grad_output", op)
    _spec.check_dtype(grad_output, _spec.FLOAT_DTYPES, "grad_output", op)
    plan = _spec.plan_window(op, dims, x.shape, kernel_size, stride, padding, 1, ceil_mode, channels_last)
    if grad_output.shape != plan.output_shape:
        raise ValueError(f"{op}: grad_output must have the forward output's shape {plan.output_shape}; got {grad_output.shape}")
    # A new gradient follows the input's memory format.
    grad_input, _ = _gradient_output(backend, op, plan.layout, x.shape, grad_output, out, x, also_read=(("x", x),))
    kernel, stride, padding, _ = plan.canonical_parameters
    to_canonical = plan.layout.canonical
    backend.stochastic_pool_inference_backward(
        to_canonical(x), to_canonical(grad_output), kernel, stride, padding, to_canonical(grad_input)
    )
    return backend.export(grad_input)


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


def _global_input(backend, op, dims, x, channels_last, accepted):
    x = backend.asarray(x, "x", op)
    _spec.check_dtype(x, accepted, "x", op)
    layout = _spec.layout_of(x.shape, dims, channels_last, "x", op)
    return x, layout, layout.split(x.shape)


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


def _global_avg_pool(dims, x, keepdims, channels_last):
    op = f"global_avg_pool{dims}d"
    channels_last = _spec.check_flag(channels_last, "channels_last", op)
    keepdims = _spec.check_flag(keepdims, "keepdims", op)
    backend = backend_for(op, x=x)
    x, layout, (batch, channels, spatial) = _global_input(backend, op, dims, x, channels_last, _spec.FLOAT_DTYPES)
    kept, flat = _global_shapes(layout, batch, channels)
    pooled = backend.empty((batch, channels), x.dtype, like=x)
    last = _memory_is_channels_last(layout, x)
    x_view = _views(layout, last, x)[0]
    if backend is cpu and not last and x_view.flags.c_contiguous:  # whole planes are contiguous rows: sum them flat
        backend.global_avg_forward_flat(x_view.reshape(batch * channels, math.prod(spatial)), pooled.reshape(-1))
    else:
        _kernel(backend, "global_avg_forward", last)(x_view, pooled)
    return backend.export(pooled.reshape(kept if keepdims else flat))


def _global_avg_pool_backward(dims, grad_output, input_shape, channels_last, out):
    op = f"global_avg_pool{dims}d_backward"
    channels_last = _spec.check_flag(channels_last, "channels_last", op)
    backend = backend_for(op, grad_output=grad_output, out=out)
    grad_output, input_shape, layout, spatial = _global_gradient(backend, op, dims, grad_output, input_shape, channels_last)
    batch, channels, _ = layout.split(input_shape)
    if out is None:
        last = channels > 1 and channels_last  # no memory to follow: use the layout the user works in
        grad_input = layout.empty(batch, channels, spatial, grad_output.dtype, last, _allocator(backend, grad_output))
    else:
        grad_input, last = _gradient_output(backend, op, layout, input_shape, grad_output, out, grad_output)
    per_plane = grad_output.reshape(batch, channels)
    _kernel(backend, "global_avg_backward", last)(per_plane, _views(layout, last, grad_input)[0])
    return backend.export(grad_input)


def _global_max_pool(dims, x, keepdims, return_indices, channels_last):
    op = f"global_max_pool{dims}d"
    channels_last = _spec.check_flag(channels_last, "channels_last", op)
    keepdims = _spec.check_flag(keepdims, "keepdims", op)
    return_indices = _spec.check_flag(return_indices, "return_indices", op)
    backend = backend_for(op, x=x)
    accepted = _spec.FLOAT_AND_INTEGER_DTYPES
    x, layout, (batch, channels, spatial) = _global_input(backend, op, dims, x, channels_last, accepted)
    kept, flat = _global_shapes(layout, batch, channels)
    last = _memory_is_channels_last(layout, x)
    single = (1,) * dims
    allocate = _allocator(backend, x)
    pooled = layout.empty(batch, channels, single, x.dtype, last, allocate)
    indices = layout.empty(batch, channels, single, np.int64, last, allocate) if return_indices else None
    x_view, pooled_view = _views(layout, last, x, pooled)
    indices_view = _views(layout, last, indices)[0] if return_indices else _NO_INDICES
    if last:
        backend.max_pool_forward_channels_last(x_view, *_whole_plane(layout, spatial), pooled_view, indices_view, return_indices)
    else:
        blocks = row_blocks(batch * channels)
        backend.max_pool_forward(x_view, *_whole_plane(layout, spatial), blocks, pooled_view, indices_view, return_indices)
    shape = kept if keepdims else flat
    return backend.export((pooled.reshape(shape), indices.reshape(shape)) if return_indices else pooled.reshape(shape))


def _global_max_pool_backward(dims, grad_output, indices, input_shape, channels_last, out):
    op = f"global_max_pool{dims}d_backward"
    channels_last = _spec.check_flag(channels_last, "channels_last", op)
    backend = backend_for(op, grad_output=grad_output, indices=indices, out=out)
    grad_output = backend.asarray(grad_output, "grad_output", op)
    grad_output_kept, input_shape, _, _ = _global_gradient(backend, op, dims, grad_output, input_shape, channels_last)
    indices = backend.asarray(indices, "indices", op)
    if indices.shape != grad_output.shape:
        raise ValueError(f"{op}: indices must have grad_output's shape {grad_output.shape}; got {indices.shape}")
    kept_indices = indices.reshape(grad_output_kept.shape)
    return _routed_backward(op, dims, grad_output_kept, kept_indices, input_shape, channels_last, out)


# --------------------------------------------------------------------------- adaptive pooling


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
    x, layout, (batch, channels, spatial) = _global_input(backend, op, dims, x, channels_last, accepted)
    output_spatial = _spec.adaptive_output_size(output_size, spatial, op)
    last = _memory_is_channels_last(layout, x)  # outputs follow the input's memory format
    allocate = _allocator(backend, x)
    y = layout.empty(batch, channels, output_spatial, x.dtype, last, allocate)
    bins, _ = _adaptive_bins(spatial, output_spatial)  # adaptive kernels run on the canonical view in any memory
    if kind == "avg":
        if backend is cpu and output_spatial == tuple(spatial):  # bins of one element: the means are x itself
            np.add(x, 0.0, out=y)  # as the kernel's 0.0 + x: -0.0 becomes +0.0 (VGG's AdaptiveAvgPool2d((7, 7)) on 7 x 7)
        else:
            backend.adaptive_avg_forward(layout.canonical(x), *bins, layout.canonical(y))
        return backend.export(y)
    indices = layout.empty(batch, channels, output_spatial, np.int64, last, allocate) if return_indices else None
    canonical_indices = _NO_INDICES if indices is None else layout.canonical(indices)
    backend.adaptive_max_forward(layout.canonical(x), *bins, layout.canonical(y), canonical_indices, return_indices)
    return backend.export((y, indices) if return_indices else y)


def _adaptive_avg_pool_backward(dims, grad_output, input_shape, channels_last, out):
    op = f"adaptive_avg_pool{dims}d_backward"
    channels_last = _spec.check_flag(channels_last, "channels_last", op)
    backend = backend_for(op, grad_output=grad_output, out=out)
    grad_output, input_shape, layout, spatial, output_spatial = _gradient_against_input(
        backend, op, dims, grad_output, input_shape, channels_last
    )
    bins, lengths = _adaptive_bins(spatial, output_spatial)
    cover = tuple(_spec.covering_bins(b, length) for b, length in zip(bins, lengths))
    # A new gradient follows grad_output's memory format (the kernel takes canonical views of any memory).
    grad_input, _ = _gradient_output(backend, op, layout, input_shape, grad_output, out, grad_output)
    if backend is cpu and tuple(output_spatial) == tuple(spatial):  # bins of one element: the gradient passes through
        np.add(grad_output, 0.0, out=grad_input)  # as the kernel's 0.0 + grad
    else:
        backend.adaptive_avg_backward(layout.canonical(grad_output), *bins, *cover, layout.canonical(grad_input))
    return backend.export(grad_input)


# --------------------------------------------------------------------------- max unpooling


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


def _max_unpool(dims, x, indices, kernel_size, stride, padding, output_size, channels_last):
    op = f"max_unpool{dims}d"
    channels_last = _spec.check_flag(channels_last, "channels_last", op)
    backend = backend_for(op, x=x, indices=indices)
    x, layout, (batch, channels, spatial) = _global_input(
        backend, op, dims, x, channels_last, _spec.FLOAT_AND_INTEGER_DTYPES
    )
    kernel = _spec.size_tuple(kernel_size, dims, "kernel_size", op, minimum=1)
    stride = kernel if stride is None else _spec.size_tuple(stride, dims, "stride", op, minimum=1)
    padding = _spec.size_tuple(padding, dims, "padding", op, minimum=0)
    output_spatial = _unpool_output_spatial(op, layout, spatial, kernel, stride, padding, output_size)
    indices = _checked_indices(backend, layout, indices, x, output_spatial, op, against="x")
    last = _memory_is_channels_last(layout, x)  # the output follows the input's memory format
    out = layout.empty(batch, channels, output_spatial, x.dtype, last, _allocator(backend, x))
    backend.max_unpool(layout.canonical(x), layout.canonical(indices), layout.canonical(out))
    return backend.export(out)


# --------------------------------------------------------------------------- public functions


def _named(function: Callable, name: str, doc: str) -> Callable:
    """The public function ``name``: ``function`` with its name and docstring, sending dask arrays to
    :mod:`numba_pool.dask` (which builds a lazy graph of calls of ``function`` on NumPy blocks)."""
    function.__name__ = function.__qualname__ = name
    function.__doc__ = doc

    @functools.wraps(function)
    def public(*args, **kwargs):
        if args:  # the common case: the lead array first, most often a NumPy array (checked cheaply)
            dask_call = type(args[0]) is not np.ndarray and is_dask_array(args[0])
        else:  # called by keyword; stochastic pooling's inference backward takes both x= and grad_output=
            dask_call = is_dask_array(kwargs.get("x")) or is_dask_array(kwargs.get("grad_output"))
        if dask_call:
            from . import dask

            return dask.call(name, function, args, kwargs)
        return function(*args, **kwargs)

    return public


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

    return _named(max_pool, f"max_pool{dims}d", _docs.max_pool_doc(dims))


def _make_max_pool_backward(dims: int) -> Callable:
    def max_pool_backward(
        grad_output: np.ndarray,
        indices: np.ndarray,
        input_shape: Sequence[int],
        *,
        channels_last: bool = False,
        out: Optional[np.ndarray] = None,
    ) -> np.ndarray:
        return _routed_backward(f"max_pool{dims}d_backward", dims, grad_output, indices, input_shape, channels_last, out)

    return _named(max_pool_backward, f"max_pool{dims}d_backward", _docs.max_pool_backward_doc(dims))


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

    return _named(avg_pool, f"avg_pool{dims}d", _docs.avg_pool_doc(dims))


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
        out: Optional[np.ndarray] = None,
    ) -> np.ndarray:
        return _avg_pool_backward(
            dims, grad_output, input_shape, kernel_size, stride, padding, ceil_mode, count_include_pad,
            divisor_override, channels_last, out,
        )

    return _named(avg_pool_backward, f"avg_pool{dims}d_backward", _docs.avg_pool_backward_doc(dims))


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

    return _named(stochastic_pool, f"stochastic_pool{dims}d", _docs.stochastic_pool_doc(dims))


def _make_stochastic_pool_backward(dims: int) -> Callable:
    def stochastic_pool_backward(
        grad_output: np.ndarray,
        indices: np.ndarray,
        input_shape: Sequence[int],
        *,
        channels_last: bool = False,
        out: Optional[np.ndarray] = None,
    ) -> np.ndarray:
        op = f"stochastic_pool{dims}d_backward"
        return _routed_backward(op, dims, grad_output, indices, input_shape, channels_last, out)

    return _named(stochastic_pool_backward, f"stochastic_pool{dims}d_backward", _docs.stochastic_pool_backward_doc(dims))


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
        out: Optional[np.ndarray] = None,
    ) -> np.ndarray:
        return _stochastic_pool_inference_backward(
            dims, grad_output, x, kernel_size, stride, padding, ceil_mode, channels_last, out
        )

    name = f"stochastic_pool{dims}d_inference_backward"
    return _named(stochastic_pool_inference_backward, name, _docs.stochastic_pool_inference_backward_doc(dims))


def _make_global_avg_pool(dims: int) -> Callable:
    def global_avg_pool(x: np.ndarray, keepdims: bool = False, *, channels_last: bool = False) -> np.ndarray:
        return _global_avg_pool(dims, x, keepdims, channels_last)

    return _named(global_avg_pool, f"global_avg_pool{dims}d", _docs.global_pool_doc(dims, "avg"))


def _make_global_avg_pool_backward(dims: int) -> Callable:
    def global_avg_pool_backward(
        grad_output: np.ndarray,
        input_shape: Sequence[int],
        *,
        channels_last: bool = False,
        out: Optional[np.ndarray] = None,
    ) -> np.ndarray:
        return _global_avg_pool_backward(dims, grad_output, input_shape, channels_last, out)

    return _named(global_avg_pool_backward, f"global_avg_pool{dims}d_backward", _docs.global_pool_backward_doc(dims, "avg"))


def _make_global_max_pool(dims: int) -> Callable:
    def global_max_pool(x: np.ndarray, keepdims: bool = False, return_indices: bool = False, *, channels_last: bool = False):
        return _global_max_pool(dims, x, keepdims, return_indices, channels_last)

    return _named(global_max_pool, f"global_max_pool{dims}d", _docs.global_pool_doc(dims, "max"))


def _make_global_max_pool_backward(dims: int) -> Callable:
    def global_max_pool_backward(
        grad_output: np.ndarray,
        indices: np.ndarray,
        input_shape: Sequence[int],
        *,
        channels_last: bool = False,
        out: Optional[np.ndarray] = None,
    ) -> np.ndarray:
        return _global_max_pool_backward(dims, grad_output, indices, input_shape, channels_last, out)

    return _named(global_max_pool_backward, f"global_max_pool{dims}d_backward", _docs.global_pool_backward_doc(dims, "max"))


def _make_adaptive_pool(dims: int, kind: str) -> Callable:
    if kind == "avg":
        def adaptive_pool(x: np.ndarray, output_size, *, channels_last: bool = False) -> np.ndarray:
            return _adaptive_pool("avg", dims, x, output_size, False, channels_last)
    else:
        def adaptive_pool(x: np.ndarray, output_size, return_indices: bool = False, *, channels_last: bool = False):
            return _adaptive_pool("max", dims, x, output_size, return_indices, channels_last)

    return _named(adaptive_pool, f"adaptive_{kind}_pool{dims}d", _docs.adaptive_pool_doc(dims, kind))


def _make_adaptive_avg_pool_backward(dims: int) -> Callable:
    def adaptive_avg_pool_backward(
        grad_output: np.ndarray,
        input_shape: Sequence[int],
        *,
        channels_last: bool = False,
        out: Optional[np.ndarray] = None,
    ) -> np.ndarray:
        return _adaptive_avg_pool_backward(dims, grad_output, input_shape, channels_last, out)

    name = f"adaptive_avg_pool{dims}d_backward"
    return _named(adaptive_avg_pool_backward, name, _docs.adaptive_avg_pool_backward_doc(dims))


def _make_adaptive_max_pool_backward(dims: int) -> Callable:
    def adaptive_max_pool_backward(
        grad_output: np.ndarray,
        indices: np.ndarray,
        input_shape: Sequence[int],
        *,
        channels_last: bool = False,
        out: Optional[np.ndarray] = None,
    ) -> np.ndarray:
        op = f"adaptive_max_pool{dims}d_backward"
        return _routed_backward(op, dims, grad_output, indices, input_shape, channels_last, out)

    name = f"adaptive_max_pool{dims}d_backward"
    return _named(adaptive_max_pool_backward, name, _docs.max_pool_backward_doc(dims).replace("max_pool", "adaptive_max_pool"))


def _make_max_unpool(dims: int) -> Callable:
    def max_unpool(
        x: np.ndarray,
        indices: np.ndarray,
        kernel_size: IntOrTuple,
        stride: Optional[IntOrTuple] = None,
        padding: IntOrTuple = 0,
        output_size: Optional[Sequence[int]] = None,
        *,
        channels_last: bool = False,
    ) -> np.ndarray:
        return _max_unpool(dims, x, indices, kernel_size, stride, padding, output_size, channels_last)

    return _named(max_unpool, f"max_unpool{dims}d", _docs.max_unpool_doc(dims))


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
adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_avg_pool3d = (_make_adaptive_pool(d, "avg") for d in (1, 2, 3))
adaptive_avg_pool1d_backward, adaptive_avg_pool2d_backward, adaptive_avg_pool3d_backward = (
    _make_adaptive_avg_pool_backward(d) for d in (1, 2, 3)
)
adaptive_max_pool1d, adaptive_max_pool2d, adaptive_max_pool3d = (_make_adaptive_pool(d, "max") for d in (1, 2, 3))
adaptive_max_pool1d_backward, adaptive_max_pool2d_backward, adaptive_max_pool3d_backward = (
    _make_adaptive_max_pool_backward(d) for d in (1, 2, 3)
)
max_unpool1d, max_unpool2d, max_unpool3d = (_make_max_unpool(d) for d in (1, 2, 3))
