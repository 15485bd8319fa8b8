"""Average pooling: each output is its window's mean; the backward spreads each gradient over its window."""

from __future__ import annotations

from typing import Optional, Protocol, Sequence, Union

import numpy as np

from .. import _spec, reference
from ..backends import backend_for, cpu
from . import _checks as checks
from . import _docs as docs
from . import _front as front
from ._layer import LinearLayer
from .spec import CudaKernel, Direction, OpSpec, SelfCheck, WindowBlocks

IntOrTuple = Union[int, Sequence[int]]


def include_padding(count_include_pad, padding, op: str) -> bool:
    """``count_include_pad`` as asked, or by default (None) True for numeric padding and False for 'same'.

    PyTorch counts padded zeros in the divisor, TensorFlow's 'same' does not; an
    explicit True or False wins under either.
    """
    if count_include_pad is None:
        return _spec.padding_mode(padding, op) != "same"
    return _spec.check_flag(count_include_pad, "count_include_pad", op)


def avg_pool(
    dims: int,
    x: np.ndarray,
    kernel_size: IntOrTuple,
    stride: Optional[IntOrTuple] = None,
    padding: Union[IntOrTuple, str] = 0,
    ceil_mode: bool = False,
    count_include_pad: Optional[bool] = None,
    divisor_override: Optional[int] = None,
    *,
    channels_last: bool = False,
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    op = f"avg_pool{dims}d"
    channels_last = _spec.check_flag(channels_last, "channels_last", op)
    count_include_pad = include_padding(count_include_pad, padding, op)
    divisor = _spec.optional_nonzero_int(divisor_override, "divisor_override", op)
    backend = backend_for(op, x=x, out=out)
    x = backend.asarray(x, "x", op)
    _spec.check_dtype(x, _spec.FLOAT_DTYPES, "x", op)
    plan = _spec.plan_window(op, dims, x.shape, kernel_size, stride, padding, 1, ceil_mode, channels_last)
    return run(backend, op, x, plan, _spec.avg_scales(plan, count_include_pad, divisor), out)


def run(backend, op, x, plan, scales, out=None):
    """Average pooling of a checked ``x`` as ``plan`` says, with the per-axis ``scales`` of its windows."""
    last = front.memory_is_channels_last(plan.layout, x)
    y = front.new_output(backend, plan, x.dtype, last, x) if out is None else backend.check_out(out, plan.output_shape, x.dtype, op, x)
    canonical = plan.layout.canonical
    backend.avg_pool_forward(canonical(x), plan.canonical_parameters[:3], scales, canonical(y))
    return backend.export(y)


def avg_pool_backward(
    dims: int,
    grad_output: np.ndarray,
    input_shape: Sequence[int],
    kernel_size: IntOrTuple,
    stride: Optional[IntOrTuple] = None,
    padding: Union[IntOrTuple, str] = 0,
    ceil_mode: bool = False,
    count_include_pad: Optional[bool] = None,
    divisor_override: Optional[int] = None,
    *,
    channels_last: bool = False,
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    op = f"avg_pool{dims}d_backward"
    channels_last = _spec.check_flag(channels_last, "channels_last", op)
    count_include_pad = include_padding(count_include_pad, padding, op)
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
    grad_input = front.gradient_output(backend, op, plan.layout, input_shape, grad_output, out, grad_output)
    scales = _spec.avg_scales(plan, count_include_pad, divisor)
    canonical = plan.layout.canonical
    backend.avg_pool_backward(canonical(grad_output), plan.covering_windows, scales, canonical(grad_input))
    return backend.export(grad_input)


def forward_doc(dims: int) -> str:
    spatial = docs.SPATIAL_NAMES[dims]
    return f"""{dims}-D average pooling, with PyTorch's semantics.

Parameters
----------
x : numpy.ndarray
    Input of shape (N, C) + {spatial} or unbatched (C,) + {spatial}; float16,
    float32 or float64. Any strides.
{docs.HALF_PRECISION_DOC}
{docs.WINDOW_DOC.format(dims=dims)}
ceil_mode : bool, default False
    Round the output size up instead of down (refused with ``padding="same"``).
count_include_pad : bool, optional
    Count padded zeros in the divisor. The default (``None``) is True for
    numeric padding, as in PyTorch, and False for ``padding="same"``, as in
    TensorFlow (each window's mean over its elements inside the input); an
    explicit True or False applies under any padding.
divisor_override : int, optional
    Divide every window sum by this instead.
{docs.LAYOUT_DOC}
out : numpy.ndarray, optional
    Preallocated output of the right shape and dtype.

Returns
-------
numpy.ndarray
    The pooled array, of the input's dtype.

{docs.RAISES_DOC}

Examples
--------
>>> import numpy as np, numba_pool
>>> numba_pool.avg_pool1d(np.array([[[1.0, 3.0, 2.0, 4.0]]]), 2)
array([[[2., 3.]]])
"""


def backward_doc(dims: int) -> str:
    return f"""Gradient of ``avg_pool{dims}d``: each window's gradient spread over it.

Takes the forward call's window parameters; each input element gathers
``grad / divisor`` from every window that covers it (deterministic).

Parameters
----------
grad_output : numpy.ndarray
    Gradient with respect to the pooled output; {docs.FLOATS}.
input_shape : tuple of int
    Shape of the forward input.
kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
    As given to ``avg_pool{dims}d``.
{docs.LAYOUT_DOC}
{docs.BACKWARD_OUT_DOC.format(shape="``input_shape``", read="``grad_output``")}

Returns
-------
numpy.ndarray
    Gradient with respect to the input, of shape ``input_shape``.

{docs.RAISES_DOC}

Examples
--------
>>> import numpy as np, numba_pool
>>> numba_pool.avg_pool1d_backward(np.array([[[2.0, 4.0]]]), (1, 1, 4), 2)
array([[[1., 1., 2., 2.]]])
"""


class Layer(LinearLayer):
    def __init__(
        self,
        kernel_size: IntOrTuple,
        stride: Optional[IntOrTuple] = None,
        padding: Union[IntOrTuple, str] = 0,
        ceil_mode: bool = False,
        count_include_pad: Optional[bool] = None,
        divisor_override: Optional[int] = None,
        *,
        channels_last: bool = False,
        reuse_buffers: bool = False,
    ) -> None:
        super().__init__(channels_last, reuse_buffers)
        self.kernel_size, self.stride, self.padding, self.ceil_mode = kernel_size, stride, padding, ceil_mode
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override

    def pool_arguments(self) -> tuple:
        return (self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad, self.divisor_override)

    def backward_arguments(self) -> tuple:
        return self.pool_arguments()


# --------------------------------------------------------------------------- dask blocks and checks


def _dask_prepare(options, plan, op):
    """The whole call's scales (a block's windows keep the divisors they have in the whole input)."""
    divisor = _spec.optional_nonzero_int(options["divisor_override"], "divisor_override", op)
    include = include_padding(options["count_include_pad"], options["padding"], op)
    return op, _spec.avg_scales(plan, include, divisor)


def _dask_block(region, window, shared):
    op, scales = shared
    block_scales = tuple(scale[first:stop] for scale, (first, stop) in zip(scales, window.output_ranges))
    return run(cpu, op, region, window.plan, block_scales)


def _selfcheck(functions, rng, put, to_host):
    x, kernel, stride, padding = checks.random_window(rng)
    include_pad = bool(rng.random() < 0.5)
    y = functions.avg_pool2d(put(x), kernel, stride, padding, count_include_pad=include_pad)
    expected = reference.avg_pool(x, kernel, stride, padding, False, include_pad, None)
    checks.expect_close(to_host(y), expected, "avg_pool2d")
    grad = rng.standard_normal(expected.shape).astype(np.float32)
    got = functions.avg_pool2d_backward(put(grad), x.shape, kernel, stride, padding, count_include_pad=include_pad)
    expected_grad = reference.avg_pool_backward(grad, x.shape[2:], kernel, stride, padding, False, include_pad, None)
    checks.expect_close(to_host(got), expected_grad, "avg_pool2d_backward")
    y = to_host(functions.avg_pool2d(put(x), kernel, stride, "same"))
    grad = rng.standard_normal(y.shape).astype(np.float32)
    got = to_host(functions.avg_pool2d_backward(put(grad), x.shape, kernel, stride, "same"))
    expected, expected_grad = checks.avg_pool_same(reference.avg_pool, reference.avg_pool_backward, x, grad, kernel, stride)
    checks.expect_close(y, expected, "avg_pool2d, padding='same'")
    checks.expect_close(got, expected_grad, "avg_pool2d_backward, padding='same'")


def _device_checks(functions, channels_last, kernel, stride, padding=0):
    def forward(x, gradient_like):
        return functions.avg_pool2d(x, kernel, stride, padding, channels_last=channels_last)

    def backward(x, gradient_like):
        y = forward(x, gradient_like)
        return functions.avg_pool2d_backward(gradient_like(y), x.shape, kernel, stride, padding, channels_last=channels_last)

    return {"avg fwd": (forward, "close"), "avg bwd": (backward, "close")}


def _warm(functions, dims, x, channels_last):
    pool, backward = getattr(functions, f"avg_pool{dims}d"), getattr(functions, f"avg_pool{dims}d_backward")
    for kernel, stride, padding in ((2, 2, 0), (3, 2, 1)):
        y = pool(x, kernel, stride, padding, channels_last=channels_last)
        backward(checks.warm_gradient(y), x.shape, kernel, stride, padding, channels_last=channels_last)


def _ptx_forward(t):
    from ..backends.cuda import avg_pool as kernels

    return kernels._avg_forward, (t.data, t.data, t.triple, t.triple, t.triple, t.per_axis, t.per_axis, t.per_axis, t.scalar)


def _ptx_backward(t):
    from ..backends.cuda import avg_pool as kernels

    return kernels._avg_backward, (t.data, t.data, t.ranges, t.ranges, t.ranges, t.per_axis, t.per_axis, t.per_axis, t.scalar)


class Kernels(Protocol):
    """Average pooling's entries of the backend contract (canonical (N, C, D, H, W) views)."""

    def avg_pool_forward(self, x, window, scales, out) -> None:
        """Each window's sum times its per-axis ``scales`` (product: 1 / divisor); ``window`` = (kernel, stride, padding)."""

    def avg_pool_backward(self, grad_output, covers, scales, grad_input) -> None:
        """Each input element gathers the scaled gradients of the windows ``covers`` says contain it."""


SPEC = OpSpec(
    "avg_pool",
    Direction("", avg_pool, forward_doc),
    (Direction("_backward", avg_pool_backward, backward_doc),),
    layer="AvgPool",
    kernels=Kernels,
    saves="input_shape",
    dask="windows",
    windows=WindowBlocks(_dask_prepare, _dask_block),
    selfcheck=SelfCheck("avg_pool2d (forward, backward; padding='same')", _selfcheck),
    device_checks=_device_checks,
    warm=_warm,
    cuda_kernels=(CudaKernel("avg forward", _ptx_forward), CudaKernel("avg backward", _ptx_backward)),
    reference=reference.avg_pool,
    layer_class=Layer,
    channels_last_output=(1, 2),
)

SPECS = (SPEC,)
