"""Max pooling: each output is its window's maximum; the backward sends each gradient to the argmax."""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import numpy as np

from .. import _spec, reference
from ..backends import backend_for
from ..backends.cpu._common import row_blocks
from . import _docs as docs
from . import _front as front
from ._layer import RoutedLayer
from .spec import Direction, OpSpec

IntOrTuple = Union[int, Sequence[int]]


def max_pool(
    dims: int,
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
    op = f"max_pool{dims}d"
    channels_last = _spec.check_flag(channels_last, "channels_last", op)
    return_indices = _spec.check_flag(return_indices, "return_indices", op)
    backend = backend_for(op, x=x, out=out)
    x = backend.asarray(x, "x", op)
    _spec.check_dtype(x, _spec.FLOAT_AND_INTEGER_DTYPES, "x", op)
    plan = _spec.plan_window(op, dims, x.shape, kernel_size, stride, padding, dilation, ceil_mode, channels_last)
    return run(backend, op, x, plan, return_indices, out)


def run(backend, op, x, plan, return_indices, out=None):
    """Max pooling of a checked ``x`` as ``plan`` says (the whole plan, or a dask block's part of one)."""
    last = front.memory_is_channels_last(plan.layout, x)
    y = front.new_output(backend, plan, x.dtype, last, x) if out is None else backend.check_out(out, plan.output_shape, x.dtype, op, x)
    indices = front.new_output(backend, plan, np.int64, last, x) if return_indices else None
    x_view, y_view = front.views(plan.layout, last, x, y)
    indices_view = front.views(plan.layout, last, indices)[0] if return_indices else front.NO_INDICES
    if last:
        backend.max_pool_forward_channels_last(x_view, *plan.canonical_parameters, y_view, indices_view, return_indices)
    else:
        blocks = row_blocks(plan.batch * plan.channels * math.prod(plan.output_spatial[:-1]))
        backend.max_pool_forward(x_view, *plan.canonical_parameters, blocks, y_view, indices_view, return_indices)
    return backend.export((y, indices) if return_indices else y)


def forward_doc(dims: int) -> str:
    spatial = docs.SPATIAL_NAMES[dims]
    return f"""{dims}-D max pooling, with PyTorch's semantics.

Each output element is the maximum of its window. Padding never wins; ties
go to the first maximum in window order and NaN propagates (the last NaN in
window order wins, as in PyTorch).

Parameters
----------
x : numpy.ndarray
    Input of shape (N, C) + {spatial} or unbatched (C,) + {spatial}; float32,
    float64 or any integer dtype (kept in the output). Any strides.
{docs.WINDOW_DOC.format(dims=dims)}
dilation : int or tuple of {dims} ints, default 1
    Spacing between window elements.
ceil_mode : bool, default False
    Round the output size up instead of down.
return_indices : bool, default False
    Also return the argmax of each window as int64, flat within its
    (n, c) plane ({docs.FLAT_INDEX[dims]}), for ``max_pool{dims}d_backward``.
{docs.LAYOUT_DOC}
out : numpy.ndarray, optional
    Preallocated output of the right shape and dtype.

Returns
-------
numpy.ndarray or tuple of numpy.ndarray
    The pooled array, and the indices when ``return_indices``.

{docs.RAISES_DOC}

Examples
--------
>>> import numpy as np, numba_pool
>>> x = np.random.default_rng(0).random((2, 3) + (8,) * {dims}, dtype=np.float32)
>>> numba_pool.max_pool{dims}d(x, 2).shape
{(2, 3) + (4,) * dims}
"""


def backward_doc(dims: int) -> str:
    return f"""Gradient of ``max_pool{dims}d``: each output gradient goes to its argmax.

Parameters
----------
grad_output : numpy.ndarray
    Gradient with respect to the pooled output; float32 or float64.
indices : numpy.ndarray
    The integer indices ``max_pool{dims}d(..., return_indices=True)`` returned.
input_shape : tuple of int
    Shape of the forward input.
{docs.LAYOUT_DOC}
{docs.BACKWARD_OUT_DOC.format(shape="``input_shape``", read="``grad_output`` or ``indices``")}

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


max_pool_backward = front.routed_backward_implementation("max_pool")


class Layer(RoutedLayer):
    def __init__(
        self,
        kernel_size: IntOrTuple,
        stride: Optional[IntOrTuple] = None,
        padding: IntOrTuple = 0,
        dilation: IntOrTuple = 1,
        ceil_mode: bool = False,
        *,
        channels_last: bool = False,
        reuse_buffers: bool = False,
    ) -> None:
        super().__init__(channels_last, reuse_buffers)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dilation, self.ceil_mode = dilation, ceil_mode

    def pool_arguments(self) -> tuple:
        return (self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode, True)


SPEC = OpSpec(
    "max_pool",
    Direction("", max_pool, forward_doc),
    (Direction("_backward", max_pool_backward, backward_doc),),
    layer="MaxPool",
    saves="indices",
    dask="windows",
    reference=reference.max_pool,
    layer_class=Layer,
    channels_last_output=(1, 2, 3),  # 1-D: as for an input that needs a gradient (PyTorch's no-grad 1-D is contiguous)
)
