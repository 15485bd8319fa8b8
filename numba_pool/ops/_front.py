"""What the ops share on their way from public call to kernel: new outputs, kernel views, checked gradients.

Nothing here knows one op from another; the op modules call these helpers once
their own arguments are checked.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Optional, Sequence

import numpy as np

from .. import _spec
from ..backends import backend_for

def memory_is_channels_last(layout: _spec.Layout, array: np.ndarray) -> bool:
    return _spec.channels_innermost(layout.canonical(array))


def allocator(backend, like) -> Callable:
    """``allocate(shape, dtype)`` for new arrays of the backend and array family of ``like``."""
    return functools.partial(backend.empty, like=like)


def canonical_or_none(array, layout: _spec.Layout):
    """The canonical view of ``array``, or None (an entry's way of saying "no indices")."""
    return None if array is None else layout.canonical(array)


def new_output(backend, plan, dtype, channels_last_memory: bool, like):
    allocate = allocator(backend, like)
    return plan.layout.empty(plan.batch, plan.channels, plan.output_spatial, dtype, channels_last_memory, allocate)


def gradient_output(backend, op, layout, input_shape, grad_output, out, memory_like, also_read=()):
    """The array a backward pass writes.

    Without ``out``, a new array whose memory follows ``memory_like``'s. With it, ``out`` once checked: the
    input's shape, grad_output's dtype, and no element shared with grad_output or with the arrays of
    ``also_read`` ((name, array) pairs), which the kernel reads while it writes.
    """
    if out is None:
        last = memory_is_channels_last(layout, memory_like)
        allocate = allocator(backend, memory_like)
        return layout.empty(*layout.split(input_shape), grad_output.dtype, last, allocate)
    return backend.check_out(out, input_shape, grad_output.dtype, op, grad_output, "grad_output", also_read)


def input_reading_backward(op, dims, grad_output, x, kernel_size, stride, padding, ceil_mode, channels_last, out):
    """The checks of a sliding-window backward that reads the forward input ``x`` (stochastic inference, Lp).

    Returns (backend, plan, x, grad_output, grad_input); a new gradient follows x's memory format.
    """
    backend = backend_for(op, grad_output=grad_output, x=x, out=out)
    x = backend.asarray(x, "x", op)
    _spec.check_dtype(x, _spec.FLOAT_DTYPES, "x", op)
    grad_output = backend.asarray(grad_output, "grad_output", op)
    _spec.check_dtype(grad_output, _spec.FLOAT_DTYPES, "grad_output", op)
    _spec.check_same_16bit_float(grad_output, "grad_output", x, "x", op)
    plan = _spec.plan_window(op, dims, x.shape, kernel_size, stride, padding, 1, ceil_mode, channels_last)
    if grad_output.shape != plan.output_shape:
        raise ValueError(f"{op}: grad_output must have the forward output's shape {plan.output_shape}; got {grad_output.shape}")
    grad_input = gradient_output(backend, op, plan.layout, x.shape, grad_output, out, x, also_read=(("x", x),))
    return backend, plan, x, grad_output, grad_input


def checked_indices(backend, layout, indices, values, spatial, op: str, against: str = "grad_output"):
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
    return indices


def gradient_against_input(backend, op, dims, grad_output, input_shape, channels_last):
    """Check a float gradient whose batch and channel sizes must match ``input_shape``.

    Returns (grad_output, input_shape, layout, input spatial sizes, output spatial sizes).
    """
    grad_output = backend.asarray(grad_output, "grad_output", op)
    _spec.check_dtype(grad_output, _spec.FLOAT_DTYPES, "grad_output", op)
    return (grad_output, *gradient_plan(op, dims, grad_output.shape, input_shape, channels_last))


@_spec.memoized
def gradient_plan(op, dims, grad_shape, input_shape, channels_last):
    """The shape checks of ``gradient_against_input``, done once per call signature."""
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


def routed_backward_implementation(op_name: str) -> Callable:
    """The backward implementation of an op that picks one element per window (``<op_name><dims>d_backward``).

    Every such op (max, stochastic, adaptive max pooling) has this one signature: the gradient goes where
    the forward's indices point.
    """

    def backward(
        dims: int,
        grad_output: np.ndarray,
        indices: np.ndarray,
        input_shape: Sequence[int],
        *,
        channels_last: bool = False,
        out: Optional[np.ndarray] = None,
    ) -> np.ndarray:
        return routed_backward(f"{op_name}{dims}d_backward", dims, grad_output, indices, input_shape, channels_last, out)

    backward.__name__ = backward.__qualname__ = f"{op_name}_backward"
    return backward


def routed_backward(op, dims, grad_output, indices, input_shape, channels_last, out=None):
    """Backward of every pooling that picks one element per window (max, stochastic, global/adaptive max)."""
    channels_last = _spec.check_flag(channels_last, "channels_last", op)
    backend = backend_for(op, grad_output=grad_output, indices=indices, out=out)
    grad_output, input_shape, layout, spatial, _ = gradient_against_input(
        backend, op, dims, grad_output, input_shape, channels_last
    )
    indices = checked_indices(backend, layout, indices, grad_output, spatial, op)
    grad_input = gradient_output(
        backend, op, layout, input_shape, grad_output, out, grad_output, also_read=(("indices", indices),)
    )
    backend.routed_backward(*(layout.canonical(a) for a in (grad_output, indices, grad_input)))
    return backend.export(grad_input)


def global_input(backend, op, dims, x, channels_last, accepted):
    x = backend.asarray(x, "x", op)
    _spec.check_dtype(x, accepted, "x", op)
    layout = _spec.layout_of(x.shape, dims, channels_last, "x", op)
    return x, layout, layout.split(x.shape)
