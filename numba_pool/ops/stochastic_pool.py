"""Stochastic pooling (Zeiler & Fergus): training picks one element per window with probability
proportional to its activation; inference returns the probability-weighted average.

About 400 lines, half of them the three functions' docstrings (the sampling
rule, seeds and the inference gradient need saying); the rest is the op's
checks, layer, dask hook and GPU checks, each short.
"""

from __future__ import annotations

import functools
from typing import Optional, Protocol, Sequence, Union

import numpy as np

from .. import _rng, _spec, reference
from ..backends import backend_for, cpu
from . import _checks as checks
from . import _docs as docs
from . import _front as front
from . import avg_pool
from ._layer import Call, LinearCall, RoutedLayer
from .spec import CudaKernel, Direction, OpSpec, SelfCheck, WindowBlocks

IntOrTuple = Union[int, Sequence[int]]


def stochastic_pool(
    dims: int,
    x: np.ndarray,
    kernel_size: IntOrTuple,
    stride: Optional[IntOrTuple] = None,
    padding: Union[IntOrTuple, str] = 0,
    ceil_mode: bool = False,
    training: bool = True,
    seed: Union[int, np.random.Generator, None] = None,
    return_indices: bool = False,
    *,
    channels_last: bool = False,
    out: Optional[np.ndarray] = None,
) -> Union[np.ndarray, tuple[np.ndarray, np.ndarray]]:
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
    draws = (seed, (0,) * 5, plan.canonical_output_shape)
    return run(backend, x, plan, draws, training, return_indices, y)


def run(backend, x, plan, draws, training, return_indices, out=None):
    """Stochastic pooling of a checked ``x`` as ``plan`` says; ``draws`` = (seed, origin, whole output shape)."""
    last = front.memory_is_channels_last(plan.layout, x)
    y = front.new_output(backend, plan, x.dtype, last, x) if out is None else out
    indices = front.new_output(backend, plan, np.int64, last, x) if return_indices else None
    canonical = plan.layout.canonical
    window = plan.canonical_parameters[:3]
    indices_view = front.canonical_or_none(indices, plan.layout)
    backend.stochastic_pool_forward(canonical(x), window, draws, training, canonical(y), indices_view)
    return backend.export((y, indices) if return_indices else y)


def stochastic_pool_inference_backward(
    dims: int,
    grad_output: np.ndarray,
    x: np.ndarray,
    kernel_size: IntOrTuple,
    stride: Optional[IntOrTuple] = None,
    padding: Union[IntOrTuple, str] = 0,
    ceil_mode: bool = False,
    *,
    channels_last: bool = False,
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    op = f"stochastic_pool{dims}d_inference_backward"
    channels_last = _spec.check_flag(channels_last, "channels_last", op)
    backend, plan, x, grad_output, grad_input = front.input_reading_backward(
        op, dims, grad_output, x, kernel_size, stride, padding, ceil_mode, channels_last, out
    )
    canonical = plan.layout.canonical
    window = plan.canonical_parameters[:3]
    backend.stochastic_pool_inference_backward(canonical(x), canonical(grad_output), window, canonical(grad_input))
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
    Input of shape (N, C) + {spatial} or unbatched (C,) + {spatial}; float16,
    float32 or float64.
{docs.HALF_PRECISION_DOC}
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
{docs.OUT_AND_RETURNS_WITH_INDICES_DOC}

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
{docs.routed_backward_parameters(f"stochastic_pool{dims}d")}

Returns
-------
numpy.ndarray
    Gradient with respect to the input (deterministic).

{docs.ROUTED_BACKWARD_RAISES_DOC}

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
    Gradient with respect to the inference output; {docs.FLOATS}
    (``x``'s dtype when either is a 16-bit float).
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


stochastic_pool_backward = front.routed_backward_implementation("stochastic_pool")


class Layer(RoutedLayer):
    """Samples in training mode (the default), returns expected values in eval mode.

    ``seed`` seeds the layer's own generator, from which each training
    forward draws a fresh seed: a layer built with the same seed replays the
    same sequence of samples.
    """

    def __init__(
        self,
        kernel_size: IntOrTuple,
        stride: Optional[IntOrTuple] = None,
        padding: Union[IntOrTuple, str] = 0,
        ceil_mode: bool = False,
        seed: Union[int, np.random.Generator, None] = None,
        *,
        channels_last: bool = False,
        reuse_buffers: bool = False,
    ) -> None:
        super().__init__(channels_last, reuse_buffers)
        self.kernel_size, self.stride, self.padding, self.ceil_mode = kernel_size, stride, padding, ceil_mode
        self.training = True
        self._generator = np.random.default_rng(seed)

    def train(self, mode: bool = True):
        """Switch to training (sampling) mode, or to eval mode with ``mode=False``; returns the layer."""
        self.training = _spec.check_flag(mode, "mode", f"{type(self).__name__}.train")
        return self

    def eval(self):
        """Switch to eval (expected value) mode; returns the layer."""
        return self.train(False)

    def _window(self) -> tuple:
        return (self.kernel_size, self.stride, self.padding, self.ceil_mode)

    def pool_arguments(self) -> tuple:
        # The layer's generator gives each call a fresh seed: a layer built with the same seed replays its samples.
        return (*self._window(), True, self._generator, True)

    def forward(self, x: np.ndarray) -> np.ndarray:
        if self.training:
            return super().forward(x)
        y = self.functions[""](x, *self._window(), False, channels_last=self.channels_last)
        self._remember(y, x=x)
        return y

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        """Training: to the sampled elements. Eval: the exact gradient of the expected value."""
        saved = self._recall(grad_output)
        if "x" not in saved:  # the latest forward sampled
            return self._run_backward(self.functions["_backward"], grad_output, saved["indices"], saved["input_shape"])
        backward = self.functions["_inference_backward"]
        return self._run_backward(backward, grad_output, saved["x"], *self._window(), memory_source=saved["x"])

    def autograd_call(self, training: bool = True):
        if training:
            return super().autograd_call(training)
        functions = self.functions
        return ExpectedValueCall(self.dims, self.channels_last, functions[""], functions["_inference_backward"], self._window())


class ExpectedValueCall(Call):
    """Inference for autograd adapters: sum(p * p) / sum(p) per window with p = max(x, 0); the backward reads x.

    An adapter differentiates the gradient again from window sums and means (linear calls: average pooling).
    """

    saves = "input"

    def __init__(self, dims, channels_last, forward, backward, window) -> None:
        super().__init__(dims, channels_last)
        self._forward, self._backward = forward, backward
        self.window = window  # kernel_size, stride, padding, ceil_mode

    def pool(self, x):
        return self._forward(x, *self.window, False, channels_last=self.channels_last)

    def backward(self, grad_output, x):
        return self._backward(grad_output, x, *self.window, channels_last=self.channels_last)

    def window_sums(self) -> LinearCall:
        """Sum over each window (average pooling with divisor 1: padding adds zeros)."""
        return self._average(count_include_pad=True, divisor_override=1)

    def window_means(self) -> LinearCall:
        """Mean over each window's elements inside the input."""
        return self._average(count_include_pad=False, divisor_override=None)

    def _average(self, count_include_pad, divisor_override) -> LinearCall:
        window = (*self.window, count_include_pad, divisor_override)
        forward = functools.partial(avg_pool.avg_pool, self.dims)
        backward = functools.partial(avg_pool.avg_pool_backward, self.dims)
        return LinearCall(self.dims, self.channels_last, forward, window, backward, window)


# --------------------------------------------------------------------------- dask blocks and checks


def _dask_prepare(options, plan, op):
    """One seed for every block, drawn once the call is known to be valid: each block draws at its
    outputs' positions in the whole output, so the picks are those of the unchunked call."""
    seed = np.uint64(int(_rng.seed_from(options["seed"], op)))
    return seed, options["training"], options["return_indices"]


def _dask_block(region, window, shared):
    seed, training, return_indices = shared
    draws = (seed, window.origin, window.whole_output_shape)
    return run(cpu, region, window.plan, draws, training, return_indices)


def _selfcheck(functions, rng, put, to_host):
    x, kernel, stride, padding = checks.random_window(rng)
    y = functions.stochastic_pool2d(put(x), kernel, stride, padding, training=False)
    expected_y = reference.stochastic_pool_inference(x, kernel, stride, padding, False)
    checks.expect_close(to_host(y), expected_y, "stochastic_pool2d inference")
    picked, indices = functions.stochastic_pool2d(put(x), kernel, stride, padding, seed=int(rng.integers(1000)), return_indices=True)
    planes = x.reshape(x.shape[0], x.shape[1], -1)
    at_indices = np.take_along_axis(planes, to_host(indices).reshape(planes.shape[0], planes.shape[1], -1), axis=2)
    checks.expect_equal(to_host(picked).reshape(at_indices.shape), at_indices, "stochastic_pool2d picks (values at their indices)")
    grad = rng.standard_normal(to_host(picked).shape).astype(np.float32)
    got = functions.stochastic_pool2d_inference_backward(put(grad), put(x), kernel, stride, padding)
    expected = reference.stochastic_pool_inference_backward(x, grad, kernel, stride, padding, False)
    checks.expect_close(to_host(got), expected, "stochastic_pool2d_inference_backward")


def _device_checks(functions, channels_last, kernel, stride, padding=0):
    def forward(x, gradient_like):
        options = dict(seed=5, return_indices=True, channels_last=channels_last)
        return functions.stochastic_pool2d(x, kernel, stride, padding, **options)

    def backward(x, gradient_like):
        y, indices = forward(x, gradient_like)
        return functions.stochastic_pool2d_backward(gradient_like(y), indices, x.shape, channels_last=channels_last)

    return {"stochastic fwd": (forward, "exact"), "stochastic bwd": (backward, "exact")}


def _warm(functions, dims, x, channels_last):
    pool = getattr(functions, f"stochastic_pool{dims}d")
    y, indices = pool(x, 2, seed=0, return_indices=True, channels_last=channels_last)
    getattr(functions, f"stochastic_pool{dims}d_backward")(checks.warm_gradient(y), indices, x.shape, channels_last=channels_last)
    y = pool(x, 2, training=False, channels_last=channels_last)
    inference_backward = getattr(functions, f"stochastic_pool{dims}d_inference_backward")
    inference_backward(checks.warm_gradient(y), x, 2, channels_last=channels_last)


def _ptx_forward(t):
    from ..backends.cuda import stochastic_pool as kernels

    arguments = (t.data, t.data, t.index, t.triple, t.triple, t.triple, t.uint64, t.five, t.five, t.flag, t.flag)
    return kernels._stochastic_forward, arguments


def _ptx_inference_backward(t):
    from ..backends.cuda import stochastic_pool as kernels

    return kernels._inference_backward, (t.data, t.data, t.data, t.triple, t.triple, t.triple, t.ranges, t.ranges, t.ranges)


class Kernels(Protocol):
    """Stochastic pooling's entries of the backend contract (canonical views; the training backward is
    ``routed_backward`` of :class:`numba_pool.backends.contract.RoutedKernels`)."""

    def stochastic_pool_forward(self, x, window, draws, training, out, indices) -> None:
        """Training: each window's sampled element (its index into ``indices`` unless None); inference:
        its expected value. ``window`` = (kernel, stride, padding); ``draws`` = (seed, origin, whole shape)."""

    def stochastic_pool_inference_backward(self, x, grad_output, window, grad_input) -> None:
        """The exact gradient of the inference output."""


SPEC = OpSpec(
    "stochastic_pool",
    Direction("", stochastic_pool, forward_doc),
    (
        Direction("_backward", stochastic_pool_backward, backward_doc),
        Direction("_inference_backward", stochastic_pool_inference_backward, inference_backward_doc),
    ),
    layer="StochasticPool",
    kernels=Kernels,
    saves="indices",
    dask="windows",
    windows=WindowBlocks(_dask_prepare, _dask_block, checking_options=(("seed", 0),)),
    selfcheck=SelfCheck("stochastic_pool2d (inference, picks, inference backward)", _selfcheck),
    device_checks=_device_checks,
    warm=_warm,
    cuda_kernels=(  # the picks' arithmetic is float64 on purpose, to pick what the CPU picks
        CudaKernel("stochastic forward", _ptx_forward, float64=True),
        CudaKernel("stochastic inference backward", _ptx_inference_backward, float64=True),
    ),
    reference=reference.stochastic_pool_inference,
    layer_class=Layer,
    channels_last_output=(1, 2, 3),  # no PyTorch counterpart: as max pooling
)

SPECS = (SPEC,)
