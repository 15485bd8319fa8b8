"""Max pooling: each output is its window's maximum; the backward sends each gradient to the argmax."""

from __future__ import annotations

from typing import Optional, Protocol, Sequence, Union

import numpy as np

from .. import _spec, reference
from ..backends import backend_for, cpu
from . import _checks as checks
from . import _docs as docs
from . import _front as front
from ._layer import RoutedLayer
from .spec import CudaKernel, Direction, OpSpec, SelfCheck, WindowBlocks

IntOrTuple = Union[int, Sequence[int]]


def max_pool(
    dims: int,
    x: np.ndarray,
    kernel_size: IntOrTuple,
    stride: Optional[IntOrTuple] = None,
    padding: Union[IntOrTuple, str] = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
    *,
    channels_last: bool = False,
    out: Optional[np.ndarray] = None,
) -> Union[np.ndarray, tuple[np.ndarray, np.ndarray]]:
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
    canonical = plan.layout.canonical
    backend.max_pool_forward(canonical(x), plan.canonical_parameters, canonical(y), front.canonical_or_none(indices, plan.layout))
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
    Input of shape (N, C) + {spatial} or unbatched (C,) + {spatial}; float16,
    float32, float64 or any integer dtype (kept in the output). Any strides.
{docs.HALF_PRECISION_DOC}
{docs.WINDOW_DOC.format(dims=dims)}
dilation : int or tuple of {dims} ints, default 1
    Spacing between window elements.
ceil_mode : bool, default False
    Round the output size up instead of down.
return_indices : bool, default False
    Also return the argmax of each window as int64, flat within its
    (n, c) plane ({docs.FLAT_INDEX[dims]}), for ``max_pool{dims}d_backward``.
{docs.OUT_AND_RETURNS_WITH_INDICES_DOC}

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
{docs.routed_backward_parameters(f"max_pool{dims}d")}

Returns
-------
numpy.ndarray
    Gradient with respect to the input, of shape ``input_shape``. Windows
    that share an argmax add up, in a fixed order (deterministic).

{docs.ROUTED_BACKWARD_RAISES_DOC}

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
        padding: Union[IntOrTuple, str] = 0,
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


# --------------------------------------------------------------------------- dask blocks and checks


def _dask_prepare(options, plan, op):
    return op, options["return_indices"]


def _dask_block(region, window, shared):
    op, return_indices = shared
    return run(cpu, op, region, window.plan, return_indices)


def _selfcheck(functions, rng, put, to_host):
    x, kernel, stride, padding = checks.random_window(rng)
    y, indices = functions.max_pool2d(put(x), kernel, stride, padding, return_indices=True)
    expected_y, expected_indices = reference.max_pool(x, kernel, stride, padding, (1, 1), False)
    checks.expect_equal(to_host(y), expected_y, "max_pool2d values")
    checks.expect_equal(to_host(indices), expected_indices, "max_pool2d indices")
    grad = rng.standard_normal(expected_y.shape).astype(np.float32)
    got = functions.max_pool2d_backward(put(grad), indices, x.shape)
    checks.expect_close(to_host(got), reference.max_pool_backward(grad, expected_indices, x.shape[2:]), "max_pool2d_backward")
    y, indices = functions.max_pool2d(put(x), kernel, stride, "same", return_indices=True)
    expected_y, expected_indices = checks.max_pool_same(reference.max_pool, x, kernel, stride)
    checks.expect_equal(to_host(y), expected_y, "max_pool2d values, padding='same'")
    checks.expect_equal(to_host(indices), expected_indices, "max_pool2d indices, padding='same'")


def _device_checks(functions, channels_last, kernel, stride, padding=0):
    def forward(x, gradient_like):
        return functions.max_pool2d(x, kernel, stride, padding, return_indices=True, channels_last=channels_last)

    def backward(x, gradient_like):
        y, indices = forward(x, gradient_like)
        return functions.max_pool2d_backward(gradient_like(y), indices, x.shape, channels_last=channels_last)

    return {"max fwd": (forward, "exact"), "max bwd": (backward, "exact")}


def _warm(functions, dims, x, channels_last):
    pool, backward = getattr(functions, f"max_pool{dims}d"), getattr(functions, f"max_pool{dims}d_backward")
    y, indices = pool(x, 2, return_indices=True, channels_last=channels_last)
    pool(x, 3, 2, 1, channels_last=channels_last)
    backward(checks.warm_gradient(y), indices, x.shape, channels_last=channels_last)


def _ptx_forward(t):
    from ..backends.cuda import max_pool as kernels

    return kernels._max_forward, (t.data, t.data, t.index, t.triple, t.triple, t.triple, t.triple, t.flag)


def _ptx_index_summary(t):  # the index check of every routed backward (max, stochastic, adaptive max, unpool)
    from ..backends.cuda import _routing

    return _routing._note_indices, (t.index, t.int64, t.int64, t.int64, t.counts, t.counts, t.counts, t.int64, t.int64)


def _ptx_routed_backward(t):  # the gather of every routed backward
    from ..backends.cuda import _routing

    return _routing._gather_by_index, (t.data, t.index, t.data, t.ranges, t.ranges, t.ranges, t.scalar, t.flag)


class Kernels(Protocol):
    """Max pooling's entries of the backend contract (canonical (N, C, D, H, W) views; its backward is
    ``routed_backward`` of :class:`numba_pool.backends.contract.RoutedKernels`)."""

    def max_pool_forward(self, x, window, out, indices) -> None:
        """Each window's maximum into ``out``, its flat plane index into ``indices`` unless that is None;
        ``window`` = (kernel, stride, padding, dilation), three ints each."""


SPEC = OpSpec(
    "max_pool",
    Direction("", max_pool, forward_doc),
    (Direction("_backward", max_pool_backward, backward_doc),),
    layer="MaxPool",
    kernels=Kernels,
    saves="indices",
    dask="windows",
    windows=WindowBlocks(_dask_prepare, _dask_block),
    selfcheck=SelfCheck("max_pool2d (values, indices, backward; padding='same')", _selfcheck),
    device_checks=_device_checks,
    warm=_warm,
    cuda_kernels=(
        CudaKernel("max forward", _ptx_forward, integers=True),
        CudaKernel("index summary", _ptx_index_summary),
        CudaKernel("routed backward", _ptx_routed_backward, integers=True),
    ),
    reference=reference.max_pool,
    layer_class=Layer,
    channels_last_output=(1, 2, 3),  # 1-D: as for an input that needs a gradient (PyTorch's no-grad 1-D is contiguous)
)

SPECS = (SPEC,)
