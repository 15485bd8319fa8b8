"""Lp-norm pooling (PyTorch's ``lp_pool``): each output is its window's p-norm; the backward reads x.

PyTorch computes ``avg_pool(x**p) * prod(kernel)`` (so a ``ceil_mode`` window cut
short by the input's end is scaled up by kernel size / its size) and takes the
1/p-th power; p = inf is max pooling of ``|x|``. Here ``padding`` is added
(padded taps contribute nothing, and the window size is counted with padding,
as average pooling's ``count_include_pad=True`` counts it).

About 380 lines: the forward and a backward that reads x (with its double-backward
pieces), each with a long docstring, plus the norm's checks, scales, layer and checks.
"""

from __future__ import annotations

import functools
import math
from typing import Optional, Protocol, Sequence, Union

import numpy as np

from .. import _spec, reference
from ..backends import backend_for, cpu
from . import _checks as checks
from . import _docs as docs
from . import _front as front
from . import avg_pool, max_pool
from ._layer import InputLayer, LinearCall, RoutedCall
from .spec import CudaKernel, Direction, OpSpec, SelfCheck, WindowBlocks

IntOrTuple = Union[int, Sequence[int]]

_NORM_ACCEPTED = "a positive int or float (float('inf') for max pooling of |x|)"


def check_norm_type(value, op: str) -> tuple[float, float, float, float]:
    """(p, 1/p, 1/p - 1, p - 1) for a positive ``norm_type``, or the TypeError/ValueError naming it."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{op}: norm_type must be {_NORM_ACCEPTED}; got {value!r} of type {type(value).__name__}")
    p = float(value)
    if not p > 0:
        raise ValueError(f"{op}: norm_type must be {_NORM_ACCEPTED}; got {value!r}")
    inverse = 1.0 / p
    return p, inverse, inverse - 1.0, p - 1.0


@functools.lru_cache(maxsize=1024)
def window_scales(plan: _spec.WindowPlan) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per canonical axis, kernel / (window size counted with padding): their product scales each power sum.

    Memoized per plan (plans are memoized), so the CUDA backend uploads them once.
    """
    kernel, stride, padding, _ = plan.canonical_parameters
    missing = _spec.CANONICAL_SPATIAL_DIMS - plan.layout.dims
    lengths = (1,) * missing + plan.input_spatial
    counts = (1,) * missing + plan.output_spatial
    scales = []
    for length, count, k, s, p, e in zip(lengths, counts, kernel, stride, padding, plan.canonical_padding_end):
        starts = np.arange(count) * s - p
        # rules.window_extent's padded size, with the padding after the input (e) where it differs from before it
        sizes = np.minimum(starts + k, length + e) - starts
        scale = k / sizes.astype(np.float64)
        scale.flags.writeable = False
        scales.append(scale)
    return tuple(scales)


def lp_pool(
    dims: int,
    x: np.ndarray,
    norm_type: float,
    kernel_size: IntOrTuple,
    stride: Optional[IntOrTuple] = None,
    ceil_mode: bool = False,
    *,
    padding: Union[IntOrTuple, str] = 0,
    channels_last: bool = False,
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    op = f"lp_pool{dims}d"
    channels_last = _spec.check_flag(channels_last, "channels_last", op)
    norm = check_norm_type(norm_type, op)
    backend = backend_for(op, x=x, out=out)
    x = backend.asarray(x, "x", op)
    _spec.check_dtype(x, _spec.FLOAT_DTYPES, "x", op)
    plan = _spec.plan_window(op, dims, x.shape, kernel_size, stride, padding, 1, ceil_mode, channels_last)
    return run(backend, op, x, plan, norm, window_scales(plan), out)


def run(backend, op, x, plan, norm, scales, out=None):
    """Lp pooling of a checked ``x`` as ``plan`` says, with the per-axis ``scales`` of its windows."""
    last = front.memory_is_channels_last(plan.layout, x)
    y = front.new_output(backend, plan, x.dtype, last, x) if out is None else backend.check_out(out, plan.output_shape, x.dtype, op, x)
    canonical = plan.layout.canonical
    backend.lp_pool_forward(canonical(x), plan.canonical_parameters[:3], scales, norm, canonical(y))
    return backend.export(y)


def lp_pool_backward(
    dims: int,
    grad_output: np.ndarray,
    x: np.ndarray,
    norm_type: float,
    kernel_size: IntOrTuple,
    stride: Optional[IntOrTuple] = None,
    ceil_mode: bool = False,
    *,
    padding: Union[IntOrTuple, str] = 0,
    channels_last: bool = False,
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    op = f"lp_pool{dims}d_backward"
    channels_last = _spec.check_flag(channels_last, "channels_last", op)
    norm = check_norm_type(norm_type, op)
    backend, plan, x, grad_output, grad_input = front.input_reading_backward(
        op, dims, grad_output, x, kernel_size, stride, padding, ceil_mode, channels_last, out
    )
    canonical = plan.layout.canonical
    backend.lp_pool_backward(
        canonical(x), canonical(grad_output), plan.canonical_parameters[:3], window_scales(plan),
        plan.covering_windows, norm, canonical(grad_input),
    )
    return backend.export(grad_input)


def forward_doc(dims: int) -> str:
    spatial = docs.SPATIAL_NAMES[dims]
    return f"""{dims}-D power-average (Lp-norm) pooling, with PyTorch's semantics plus padding.

Each output is ``(sum(x**p) * prod(kernel_size) / n) ** (1/p)`` over its
window, where ``n`` is the window's size counted with padding: ``n`` is the
kernel size except for a ``ceil_mode`` window cut short by the input's end,
which PyTorch scales up this way. ``p = 1`` is sum pooling (of signed values),
``p = inf`` max pooling of ``|x|``. As in PyTorch, a negative sum with a
fractional ``1/p`` (odd ``p`` or negative ``x``) gives NaN. Sums are taken in
float64 and rounded once to ``x``'s dtype.

Parameters
----------
x : numpy.ndarray
    Input of shape (N, C) + {spatial} or unbatched (C,) + {spatial}; float16,
    float32 or float64. Any strides.
{docs.HALF_PRECISION_DOC}
norm_type : float
    The power p: a positive int or float, or ``float('inf')``.
kernel_size : int or tuple of {dims} ints
    Window size.
stride : int or tuple of {dims} ints, optional
    Window step; ``None`` (default) means ``kernel_size``.
ceil_mode : bool, default False
    Round the output size up instead of down.
padding : int or tuple of {dims} ints, or "same" or "valid", default 0
    Keyword only (PyTorch has none): implicit padding on both sides, at most
    ``kernel_size // 2``; padded taps contribute nothing. "valid" and "same"
    (any case) are TensorFlow's paddings as in ``max_pool{dims}d``: under
    "same" every window counts ``n`` = the kernel size, so each output is the
    p-norm of the window's elements inside the input; ``ceil_mode=True`` is
    refused with it.
{docs.LAYOUT_DOC}
out : numpy.ndarray, optional
    Preallocated output of the right shape and dtype.

Returns
-------
numpy.ndarray
    The pooled array, of the input's dtype.

Raises
------
TypeError
    For a non-array input, a dtype other than float16/float32/float64, a
    non-number ``norm_type`` or a non-integer size.
ValueError
    For ``norm_type <= 0`` or NaN, a wrong number of dims, sizes out of
    range, or an empty output.

Examples
--------
>>> import numpy as np, numba_pool
>>> numba_pool.lp_pool1d(np.array([[[3.0, 4.0, 1.0, -1.0]]]), 2, 2)
array([[[5.        , 1.41421356]]])
"""


def backward_doc(dims: int) -> str:
    return f"""Gradient of ``lp_pool{dims}d`` with respect to ``x`` (it reads ``x``).

Element ``i`` of a window with ``z = sum(x**p) * prod(kernel_size) / n``
receives ``grad * prod(kernel_size) / n * z ** (1/p - 1) * x_i ** (p - 1)``,
as PyTorch's autograd computes it: a window with ``z == 0`` gives its
elements 0 (PyTorch's documented rule, also for ``p = 1``), and NaN or inf
come where PyTorch's do (``x_i = 0`` with ``p < 1``, a negative ``z`` with a
fractional ``1/p``). ``p = inf``: each gradient goes to the window's first
largest ``|x|`` (the last NaN), times ``sign(x)`` (0 for 0 and NaN, as
``torch.sign``). Each input element gathers from its covering windows in
window order: deterministic.

Parameters
----------
grad_output : numpy.ndarray
    Gradient with respect to the pooled output; {docs.FLOATS}
    (``x``'s dtype when either is a 16-bit float).
x : numpy.ndarray
    The forward input.
norm_type, kernel_size, stride, ceil_mode
    As given to ``lp_pool{dims}d``.
padding : int or tuple of {dims} ints, default 0
    As given to ``lp_pool{dims}d``.
{docs.LAYOUT_DOC}
{docs.BACKWARD_OUT_DOC.format(shape="``x.shape``", read="``grad_output`` or ``x``")}

Returns
-------
numpy.ndarray
    Gradient with respect to ``x``, of ``grad_output``'s dtype.

{docs.RAISES_DOC}

Examples
--------
>>> import numpy as np, numba_pool
>>> numba_pool.lp_pool1d_backward(np.ones((1, 1, 1)), np.array([[[3.0, 4.0]]]), 2, 2)
array([[[0.6, 0.8]]])
"""


class Layer(InputLayer):
    """The gradient reads the forward input, which the layer keeps."""

    def __init__(
        self,
        norm_type: float,
        kernel_size: IntOrTuple,
        stride: Optional[IntOrTuple] = None,
        ceil_mode: bool = False,
        *,
        padding: Union[IntOrTuple, str] = 0,
        channels_last: bool = False,
        reuse_buffers: bool = False,
    ) -> None:
        super().__init__(channels_last, reuse_buffers)
        self.norm_type, self.kernel_size, self.stride, self.ceil_mode = norm_type, kernel_size, stride, ceil_mode
        self.padding = padding

    def pool_arguments(self) -> tuple:
        return (self.norm_type, self.kernel_size, self.stride, self.ceil_mode)

    def keyword_arguments(self) -> dict:
        return {"padding": self.padding}  # keyword-only in the functions, as PyTorch's order has no place for it

    def gradient_graph(self, grad_output, x, pieces):
        """The kernels' gradient from average or max pooling's autograd pieces and tensor operations."""
        p = check_norm_type(self.norm_type, type(self).__name__)[0]
        window = (self.kernel_size, self.stride, self.padding, self.ceil_mode)
        if p == math.inf:
            call = RoutedCall(
                self.dims, self.channels_last, functools.partial(max_pool.max_pool, self.dims),
                (*window[:3], 1, self.ceil_mode, True), functools.partial(max_pool.max_pool_backward, self.dims),
            )
            _, indices = pieces.routed(x.abs(), call)
            return pieces.scatter(grad_output, indices, call, tuple(x.shape)) * x.sign()
        sums = (*window, True, None)  # average pooling counting padding: (power sum) / n
        call = LinearCall(
            self.dims, self.channels_last, functools.partial(avg_pool.avg_pool, self.dims), sums,
            functools.partial(avg_pool.avg_pool_backward, self.dims), sums,
        )
        kernel = math.prod(_spec.size_tuple(self.kernel_size, self.dims, "kernel_size", type(self).__name__, 1))
        z = pieces.linear(x**p, call) * kernel
        nonzero = z != 0
        safe = z.where(nonzero, 1.0)
        coefficient = (grad_output * kernel * safe ** (1.0 / p - 1.0)).where(nonzero, 0.0)
        return pieces.adjoint(coefficient, call, tuple(x.shape)) * x ** (p - 1.0)


# --------------------------------------------------------------------------- dask blocks and checks


def _dask_prepare(options, plan, op):
    """The norm and the whole call's scales (a block's windows keep the scales they have in the whole input)."""
    return op, check_norm_type(options["norm_type"], op), window_scales(plan)


def _dask_block(region, window, shared):
    op, norm, scales = shared
    block_scales = tuple(scale[first:stop] for scale, (first, stop) in zip(scales, window.output_ranges))
    return run(cpu, op, region, window.plan, norm, block_scales)


def _selfcheck(functions, rng, put, to_host):
    x, kernel, stride, padding = checks.random_window(rng)
    p = float(rng.choice([1.0, 2.0, 3.0, 1.5, np.inf]))
    x = np.abs(x) if p == 1.5 else x
    ceil_mode = bool(rng.random() < 0.5)
    y = functions.lp_pool2d(put(x), p, kernel, stride, ceil_mode, padding=padding)
    expected = reference.lp_pool(x, p, kernel, stride, ceil_mode, padding)
    checks.expect_close(to_host(y), expected, "lp_pool2d")
    grad = rng.standard_normal(expected.shape).astype(np.float32)
    got = functions.lp_pool2d_backward(put(grad), put(x), p, kernel, stride, ceil_mode, padding=padding)
    expected_grad = reference.lp_pool_backward(x, grad, p, kernel, stride, ceil_mode, padding)
    checks.expect_close(to_host(got), expected_grad, "lp_pool2d_backward")


def _device_checks(functions, channels_last, kernel, stride, padding=0):
    def forward(x, gradient_like):
        return functions.lp_pool2d(x, 2, kernel, stride, padding=padding, channels_last=channels_last)

    def backward(x, gradient_like):
        y = forward(x, gradient_like)
        gradient = gradient_like(y)
        return functions.lp_pool2d_backward(gradient, x, 2, kernel, stride, padding=padding, channels_last=channels_last)

    return {"lp fwd": (forward, "close"), "lp bwd": (backward, "close")}


def _warm(functions, dims, x, channels_last):
    pool, backward = getattr(functions, f"lp_pool{dims}d"), getattr(functions, f"lp_pool{dims}d_backward")
    for norm_type in (2, float("inf")):
        y = pool(x, norm_type, 2, channels_last=channels_last)
        backward(checks.warm_gradient(y), x, norm_type, 2, channels_last=channels_last)


def _ptx_types(t):
    """(float64 per-axis table, float64 5-D scratch, float64 scalar): the kernels' float64 arguments in any dtype."""
    from numba import types

    return t.array(np.float64, 1, "C"), t.array(np.float64), types.float64


def _ptx_forward(t):
    from ..backends.cuda import lp_pool as kernels

    table, _, real = _ptx_types(t)
    return kernels._lp_forward, (t.data, t.data, t.triple, t.triple, t.triple, table, table, table, real, real)


def _ptx_coefficients(t):
    from ..backends.cuda import lp_pool as kernels

    table, wide, real = _ptx_types(t)
    args = (t.data, t.data, wide, t.index, t.triple, t.triple, t.triple, table, table, table, real, real)
    return kernels._lp_coefficients, args


def _ptx_gather(t):
    from ..backends.cuda import lp_pool as kernels

    _, wide, real = _ptx_types(t)
    return kernels._lp_gather, (t.data, wide, t.index, t.data, t.ranges, t.ranges, t.ranges, real, real)


class Kernels(Protocol):
    """Lp pooling's entries of the backend contract (canonical (N, C, D, H, W) views)."""

    def lp_pool_forward(self, x, window, scales, norm, out) -> None:
        """Each window's ``(sum(x**p) * scale) ** (1/p)`` (p = inf: largest |x|); ``norm`` = (p, 1/p, 1/p - 1, p - 1)."""

    def lp_pool_backward(self, x, grad_output, window, scales, covers, norm, grad_input) -> None:
        """The exact gradient, each input element gathering from the windows ``covers`` says contain it."""


SPEC = OpSpec(
    "lp_pool",
    Direction("", lp_pool, forward_doc),
    (Direction("_backward", lp_pool_backward, backward_doc),),
    layer="LpPool",
    kernels=Kernels,
    saves="input_formula",
    dask="windows",
    windows=WindowBlocks(_dask_prepare, _dask_block),
    selfcheck=SelfCheck("lp_pool2d (forward, backward)", _selfcheck),
    device_checks=_device_checks,
    warm=_warm,
    cuda_kernels=(
        CudaKernel("lp forward", _ptx_forward, float64=True),
        CudaKernel("lp backward coefficients", _ptx_coefficients, float64=True),
        CudaKernel("lp backward gather", _ptx_gather, float64=True),
    ),
    reference=reference.lp_pool,
    layer_class=Layer,
    channels_last_output=(1, 2),
)

SPECS = (SPEC,)
