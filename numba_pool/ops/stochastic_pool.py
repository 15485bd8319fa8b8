"""Stochastic pooling (Zeiler & Fergus): training picks one element per window with probability
proportional to its activation; inference returns the probability-weighted average."""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import numpy as np

from .. import _rng, _spec, reference
from ..backends import backend_for
from ..backends.cpu._common import row_blocks
from . import _docs as docs
from . import _front as front
from .spec import Direction, OpSpec

IntOrTuple = Union[int, Sequence[int]]


def stochastic_pool(
    dims: int,
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
    draws = (seed, (0,) * 5, front.canonical_output_shape(plan))
    return run(backend, x, plan, draws, training, return_indices, y)


def run(backend, x, plan, draws, training, return_indices, out=None):
    """Stochastic pooling of a checked ``x`` as ``plan`` says; ``draws`` = (seed, origin, whole output shape)."""
    last = front.memory_is_channels_last(plan.layout, x)
    y = front.new_output(backend, plan, x.dtype, last, x) if out is None else out
    indices = front.new_output(backend, plan, np.int64, last, x) if return_indices else None
    kernel, stride, padding, _ = plan.canonical_parameters
    x_view, y_view = front.views(plan.layout, last, x, y)
    indices_view = front.views(plan.layout, last, indices)[0] if return_indices else front.NO_INDICES
    if last:
        blocks = row_blocks(plan.batch * math.prod(plan.output_spatial[:-1]))
        backend.stochastic_pool_forward_channels_last(
            x_view, kernel, stride, padding, draws, training, blocks, y_view, indices_view, return_indices
        )
    else:
        backend.stochastic_pool_forward(x_view, kernel, stride, padding, draws, training, y_view, indices_view, return_indices)
    return backend.export((y, indices) if return_indices else y)


def stochastic_pool_inference_backward(
    dims: int,
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
    grad_input, _ = front.gradient_output(backend, op, plan.layout, x.shape, grad_output, out, x, also_read=(("x", x),))
    kernel, stride, padding, _ = plan.canonical_parameters
    to_canonical = plan.layout.canonical
    backend.stochastic_pool_inference_backward(
        to_canonical(x), to_canonical(grad_output), kernel, stride, padding, to_canonical(grad_input)
    )
    return backend.export(grad_input)


def forward_doc(dims: int) -> str:
    spatial = docs.SPATIAL_NAMES[dims]
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
{docs.WINDOW_DOC.format(dims=dims)}
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
>>> window = np.array([[[1.0, 2.0, 3.0, 4.0]]])
>>> numba_pool.stochastic_pool1d(window, 4, training=False)
array([[[3.]]])
>>> value, index = numba_pool.stochastic_pool1d(window, 4, seed=0, return_indices=True)
>>> bool(value[0, 0, 0] == window[0, 0, index[0, 0, 0]])
True
"""


def backward_doc(dims: int) -> str:
    return f"""Training gradient of ``stochastic_pool{dims}d``: each output gradient goes to the picked element.

For the gradient of the inference output (``training=False``) use
``stochastic_pool{dims}d_inference_backward``; ``StochasticPool{dims}d`` layers
choose between the two by their mode.

Parameters
----------
grad_output : numpy.ndarray
    Gradient with respect to the pooled output; float32 or float64.
indices : numpy.ndarray
    The integer indices ``stochastic_pool{dims}d(..., return_indices=True)`` returned.
input_shape : tuple of int
    Shape of the forward input.
{docs.LAYOUT_DOC}
{docs.BACKWARD_OUT_DOC.format(shape="``input_shape``", read="``grad_output`` or ``indices``")}

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


def inference_backward_doc(dims: int) -> str:
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
{docs.LAYOUT_DOC}
{docs.BACKWARD_OUT_DOC.format(shape="``x.shape``", read="``grad_output`` or ``x``")}

Returns
-------
numpy.ndarray
    Gradient with respect to ``x`` (deterministic).

{docs.RAISES_DOC}

Examples
--------
>>> import numpy as np, numba_pool
>>> numba_pool.stochastic_pool1d_inference_backward(np.ones((1, 1, 1)), np.array([[[1.0, 3.0]]]), 2)
array([[[-0.125,  0.875]]])
"""


def stochastic_pool_backward(
    dims: int,
    grad_output: np.ndarray,
    indices: np.ndarray,
    input_shape: Sequence[int],
    *,
    channels_last: bool = False,
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    return front.routed_backward(f"stochastic_pool{dims}d_backward", dims, grad_output, indices, input_shape, channels_last, out)


SPEC = OpSpec(
    "stochastic_pool",
    Direction("", stochastic_pool, forward_doc),
    (
        Direction("_backward", stochastic_pool_backward, backward_doc),
        Direction("_inference_backward", stochastic_pool_inference_backward, inference_backward_doc),
    ),
    layer="StochasticPool",
    saves="indices",
    dask="windows",
    reference=reference.stochastic_pool_inference,
)
