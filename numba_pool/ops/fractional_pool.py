"""Fractional pooling: max (Graham, 2015, as PyTorch implements it) and average (TensorFlow's).

Fractional max pooling: windows of ``kernel_size`` whose starts follow a pseudo-random sequence, one
per (n, c) plane and axis, driven by a sample in [0, 1). The windows are planned here, on the host:
from the samples (given, or drawn from the counter-based generator at each sample's position in the
whole (N, C, dims) array, so a seed gives the same windows on every backend, thread count and dask
chunking), the start of window i along an axis of length L is ``int((i + u) * alpha) - int(u * alpha)``
with ``alpha = (L - kernel) / (out - 1)``, computed in x's float type as PyTorch does, the last
window ending at L. The kernels take the starts; the backward is the routed backward every max
pooling shares.

Fractional average pooling: one cumulative pooling sequence per axis, shared by every plane, as
TensorFlow draws it (pseudo-random or a shuffle of steps), from the same generator keyed by seed and
axis. Its windows are bins per axis, so adaptive average pooling's entries run it, forward and
(gather) backward.

About 780 lines: two ops (each with its argument checks, host-side window planning, long
docstrings, layer, checks and dask hooks) that share the samples' generator and checks. Splitting
them into two modules is the obvious next step if either grows.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional, Protocol, Sequence, Union

import numpy as np

from .. import _rng, _spec, reference
from ..backends import backend_for, cpu, cuda_backend, is_device_array
from . import _checks as checks
from . import _docs as docs
from . import _front as front
from . import adaptive_pool
from ._layer import LinearLayer, RoutedLayer
from .spec import CudaKernel, Direction, OpSpec, PlaneBlocks, SelfCheck

IntOrTuple = Union[int, Sequence[int]]
FloatOrTuple = Union[float, Sequence[float]]

# PyTorch's slot of each spatial axis's sample in the (N, C, dims) samples: its 2-D op reads sample 0
# for the width and 1 for the height, its 3-D op 0, 1, 2 for D, H, W.
SAMPLE_SLOTS = reference.FRACTIONAL_SAMPLE_AXES


class FractionalPlan(NamedTuple):
    """A checked call: the input's layout and sizes, the output's spatial sizes and the kernel."""

    layout: _spec.Layout
    batch: int
    channels: int
    spatial: tuple[int, ...]
    output_spatial: tuple[int, ...]
    kernel: tuple[int, ...]

    @property
    def samples_shape(self) -> tuple[int, int, int]:
        return (self.batch, self.channels, self.layout.dims)


def _output_from_ratio(value, spatial, op) -> tuple[int, ...]:
    """PyTorch's rule: ``int(L * ratio)`` per axis, each ratio a float in (0, 1)."""
    dims = len(spatial)
    accepted = f"a float in (0, 1) or a tuple of {dims} such floats"
    ratios = (value,) * dims if not isinstance(value, (tuple, list)) else tuple(value)
    if len(ratios) != dims:
        raise ValueError(f"{op}: output_ratio must be {accepted}; got {value!r} with {len(ratios)} entries")
    for ratio in ratios:
        if isinstance(ratio, (bool, np.bool_)) or not isinstance(ratio, (int, float, np.integer, np.floating)):
            raise TypeError(f"{op}: output_ratio must be {accepted}; got {value!r}")
        if not 0 < ratio < 1:
            raise ValueError(f"{op}: output_ratio must be {accepted}; got {value!r}")
    sizes = tuple(int(length * float(ratio)) for length, ratio in zip(spatial, ratios))
    if min(sizes) < 1:
        raise ValueError(
            f"{op}: output_ratio {value!r} gives output size {sizes} for input size {tuple(spatial)}; every size "
            "must be at least 1: raise the ratio or give output_size"
        )
    return sizes


def plan(op, dims, shape, kernel_size, output_size, output_ratio, channels_last) -> FractionalPlan:
    """Check the window arguments against the input's ``shape``."""
    layout = _spec.layout_of(tuple(shape), dims, channels_last, "x", op)
    batch, channels, spatial = layout.split(tuple(shape))
    kernel = _spec.size_tuple(kernel_size, dims, "kernel_size", op, 1)
    if any(k > length for k, length in zip(kernel, spatial)):
        raise ValueError(f"{op}: kernel_size {kernel} must fit in the input's spatial size {spatial}")
    if (output_size is None) == (output_ratio is None):
        given = "both" if output_size is not None else "neither"
        raise ValueError(f"{op}: give exactly one of output_size and output_ratio; got {given}")
    if output_size is not None:
        output_spatial = _spec.size_tuple(output_size, dims, "output_size", op, 1)
        what = f"output_size {output_spatial}"
    else:
        output_spatial = _output_from_ratio(output_ratio, spatial, op)
        what = f"output_ratio {output_ratio!r} (output size {output_spatial})"
    largest = tuple(length - k + 1 for length, k in zip(spatial, kernel))
    if any(count > most for count, most in zip(output_spatial, largest)):
        raise ValueError(
            f"{op}: {what} is too large: with kernel_size {kernel} and input size {spatial} each output size can "
            f"be at most input - kernel + 1 = {largest}"
        )
    return FractionalPlan(layout, batch, channels, spatial, output_spatial, kernel)


def checked_samples(samples, plan: FractionalPlan, dtype, op) -> np.ndarray:
    """The user's ``_random_samples`` as a host array of x's dtype, once its shape and values are right."""
    accepted = f"an array of shape {plan.samples_shape} (PyTorch's (N, C, {plan.layout.dims}); (1, C, dims) for unbatched x)"
    if is_device_array(samples):  # host or device samples for any x: a few numbers, read on the host
        gpu = cuda_backend()
        samples = gpu.fractional_samples_to_host(gpu.asarray(samples, "_random_samples", op))
    else:
        samples = _spec.host_array(samples, "_random_samples", op)
    if samples.dtype.kind != "f":
        raise TypeError(f"{op}: _random_samples must be {accepted} of floats; got dtype {samples.dtype}")
    if samples.shape != plan.samples_shape:
        raise ValueError(f"{op}: _random_samples must be {accepted}; got shape {samples.shape}")
    samples = samples.astype(dtype)  # PyTorch computes the windows in x's float type
    if samples.size and not (np.all(samples >= 0) and np.all(samples < 1)):
        raise ValueError(
            f"{op}: _random_samples must hold numbers in [0, 1) once in x's dtype {np.dtype(dtype)}; got values "
            f"from {np.min(samples)} to {np.max(samples)}{' and NaN' if np.isnan(samples).any() else ''}"
        )
    return samples


def drawn_samples(seed, origin, whole_channels, shape, dtype) -> np.ndarray:
    """Samples of ``shape`` (N, C, dims) for planes from ``origin`` (n, c) on, each from the generator at
    its position in the whole (N, C, dims) array, rounded down to a multiple of 2**-24 for float32 (so
    that it stays below 1 in that type)."""
    n, c, slot = np.meshgrid(*(np.arange(length, dtype=np.int64) for length in shape), indexing="ij")
    counters = ((n + origin[0]) * whole_channels + (c + origin[1])) * shape[2] + slot
    values = _rng.uniforms(np.uint64(seed), counters.ravel()).reshape(shape)
    bits = 8 if _spec.is_bfloat16(np.dtype(dtype)) else np.finfo(dtype).nmant + 1  # np.finfo lacks ml_dtypes' bfloat16
    return (np.floor(values * 2.0**bits) * 2.0**-bits).astype(dtype)


def interval_starts(samples: np.ndarray, length: int, kernel: int, count: int) -> np.ndarray:
    """(N, C, count) window starts along one axis from (N, C) samples, in the samples' float type
    (the vectorised form of ``reference.fractional_interval_starts``)."""
    real = samples.dtype.type
    starts = np.empty(samples.shape + (count,), np.int64)
    if count > 1:
        alpha = real(length - kernel) / real(count - 1)
        u = samples[..., np.newaxis]
        steps = np.arange(count - 1, dtype=samples.dtype)
        starts[..., :-1] = ((steps + u) * alpha).astype(np.int64) - (u * alpha).astype(np.int64)
    starts[..., -1] = length - kernel
    # Samples in [0, 1) keep every start within [0, L - kernel]; the bound keeps reads inside the input
    # whatever the rounding of alpha does.
    return np.minimum(starts, length - kernel)


def canonical_starts(plan: FractionalPlan, samples: np.ndarray) -> tuple[tuple[np.ndarray, ...], tuple[int, int, int]]:
    """Per canonical axis (D, H, W), the (N, C, out length) starts, and the canonical kernel."""
    dims = plan.layout.dims
    missing = _spec.CANONICAL_SPATIAL_DIMS - dims
    unit = np.zeros((plan.batch, plan.channels, 1), np.int64)
    starts = [unit] * missing + [
        interval_starts(samples[:, :, SAMPLE_SLOTS[dims][axis]], length, k, count)
        for axis, (length, k, count) in enumerate(zip(plan.spatial, plan.kernel, plan.output_spatial))
    ]
    return tuple(starts), (1,) * missing + plan.kernel


def fractional_max_pool(
    dims: int,
    x: np.ndarray,
    kernel_size: IntOrTuple,
    output_size: Optional[IntOrTuple] = None,
    output_ratio: Optional[FloatOrTuple] = None,
    return_indices: bool = False,
    _random_samples: Optional[np.ndarray] = None,
    seed: Union[int, np.random.Generator, None] = None,
    *,
    channels_last: bool = False,
    out: Optional[np.ndarray] = None,
) -> Union[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    op = f"fractional_max_pool{dims}d"
    channels_last = _spec.check_flag(channels_last, "channels_last", op)
    return_indices = _spec.check_flag(return_indices, "return_indices", op)
    backend = backend_for(op, x=x, out=out)
    x = backend.asarray(x, "x", op)
    _spec.check_dtype(x, _spec.FLOAT_DTYPES, "x", op)
    call = plan(op, dims, x.shape, kernel_size, output_size, output_ratio, channels_last)
    output_shape = call.layout.join(call.batch, call.channels, call.output_spatial)
    y = None if out is None else backend.check_out(out, output_shape, x.dtype, op, x)
    if _random_samples is not None:
        if seed is not None:
            raise ValueError(f"{op}: give _random_samples or seed, not both (the samples decide the windows)")
        samples = checked_samples(_random_samples, call, x.dtype, op)
    else:  # last, so that a refused call does not advance a Generator
        samples = drawn_samples(_rng.seed_from(seed, op), (0, 0), call.channels, call.samples_shape, x.dtype)
    return run(backend, x, call, samples, return_indices, y)


def run(backend, x, call: FractionalPlan, samples, return_indices, out=None):
    """Fractional max pooling of a checked ``x`` with the windows that ``samples`` (x's dtype) give."""
    last = front.memory_is_channels_last(call.layout, x)
    allocate = front.allocator(backend, x)
    sizes = (call.batch, call.channels, call.output_spatial)
    y = call.layout.empty(*sizes, x.dtype, last, allocate) if out is None else out
    indices = call.layout.empty(*sizes, np.int64, last, allocate) if return_indices else None
    starts, kernel = canonical_starts(call, samples)
    canonical = call.layout.canonical
    backend.fractional_max_pool_forward(canonical(x), starts, kernel, canonical(y), front.canonical_or_none(indices, call.layout))
    return backend.export((y, indices) if return_indices else y)


fractional_max_pool_backward = front.routed_backward_implementation("fractional_max_pool")


def forward_doc(dims: int) -> str:
    spatial = docs.SPATIAL_NAMES[dims]
    slots = {1: "sample 0 for L", 2: "sample 0 for W and 1 for H (PyTorch's order)", 3: "samples 0, 1, 2 for D, H, W"}[dims]
    torch_note = {
        1: "PyTorch has no 1-D op; this is its rule on one axis.",
        2: "",
        3: "PyTorch's 3-D op also refuses ``out = L - kernel + 1``; it is accepted here.",
    }[dims]
    return f"""{dims}-D fractional max pooling (Graham, 2015), with PyTorch's semantics.

Each output is the maximum of a ``kernel_size`` window; along an axis of
length ``L`` with ``out`` outputs, window ``i < out - 1`` starts at
``int((i + u) * alpha) - int(u * alpha)`` with ``alpha = (L - kernel) /
(out - 1)`` (computed in x's float type, as PyTorch does), and the last
window ends at ``L``. ``u`` is one sample in [0, 1) per (n, c) plane and
axis. Ties go to the first maximum in window order and NaN propagates (the
last NaN in window order wins), as in PyTorch. With the same samples, values
and indices equal PyTorch's bit for bit. {torch_note}

Parameters
----------
x : numpy.ndarray
    Input of shape (N, C) + {spatial} or unbatched (C,) + {spatial};
    {docs.FLOATS}. Any strides. In float16 (and bfloat16) the windows are
    computed in that dtype, as PyTorch computes them, so they may differ from
    the windows of the same values in float32 (the one exception to the
    16-bit rule of the other ops); the maximum of each window is exact.
kernel_size : int or tuple of {dims} ints
    Window size, at most the input's size.
output_size : int or tuple of {dims} ints, optional
    Output size, from 1 to ``L - kernel + 1`` per axis.
output_ratio : float or tuple of {dims} floats, optional
    Output size as ``int(L * ratio)``, each ratio in (0, 1). Give exactly one
    of ``output_size`` and ``output_ratio``.
return_indices : bool, default False
    Also return the argmax of each window as int64, flat within its
    (n, c) plane ({docs.FLAT_INDEX[dims]}), for ``fractional_max_pool{dims}d_backward``.
_random_samples : array, optional
    PyTorch's samples: shape (N, C, {dims}), or (1, C, {dims}) for unbatched
    input, numbers in [0, 1) once cast to x's dtype ({slots}). A host or a
    CUDA array, whatever ``x`` is: the windows are planned on the host.
seed : int, numpy.random.Generator or None
    Without ``_random_samples``: the samples come from numba_pool's
    counter-based generator at each sample's position (n, c, slot) in the
    whole input, so a seed gives the same windows on every backend, thread
    count and dask chunking. ``None`` draws a fresh seed; a Generator gives
    one seed per call and advances.
{docs.OUT_AND_RETURNS_WITH_INDICES_DOC}

Examples
--------
>>> import numpy as np, numba_pool
>>> x = np.random.default_rng(0).random((2, 3) + (9,) * {dims}, dtype=np.float32)
>>> numba_pool.fractional_max_pool{dims}d(x, 2, output_size=5, seed=0).shape
{(2, 3) + (5,) * dims}
"""


def backward_doc(dims: int) -> str:
    return f"""Gradient of ``fractional_max_pool{dims}d``: each output gradient goes to its argmax.

Parameters
----------
{docs.routed_backward_parameters(f"fractional_max_pool{dims}d")}

Returns
-------
numpy.ndarray
    Gradient with respect to the input, of shape ``input_shape``. Windows
    overlap; those that share an argmax add up, in output order
    (deterministic on every backend: a gather, no atomics).

{docs.ROUTED_BACKWARD_RAISES_DOC}

Examples
--------
>>> import numpy as np, numba_pool
>>> x = np.array([[[1.0, 3.0, 2.0, 0.0]]])
>>> y, idx = numba_pool.fractional_max_pool1d(x, 2, output_size=3, return_indices=True, seed=0)
>>> numba_pool.fractional_max_pool1d_backward(np.ones_like(y), idx, x.shape)
array([[[0., 2., 1., 0.]]])
"""


class Layer(RoutedLayer):
    """Draws fresh windows on every forward from its own generator (seeded by ``seed``: a layer built with
    the same seed replays the same windows), or uses ``_random_samples`` when given (PyTorch's buffer)."""

    def __init__(
        self,
        kernel_size: IntOrTuple,
        output_size: Optional[IntOrTuple] = None,
        output_ratio: Optional[FloatOrTuple] = None,
        seed: Union[int, np.random.Generator, None] = None,
        *,
        _random_samples=None,
        channels_last: bool = False,
        reuse_buffers: bool = False,
    ) -> None:
        super().__init__(channels_last, reuse_buffers)
        self.kernel_size, self.output_size, self.output_ratio = kernel_size, output_size, output_ratio
        self.random_samples = _random_samples
        self._generator = np.random.default_rng(seed)

    def pool_arguments(self) -> tuple:
        seed = self._generator if self.random_samples is None else None
        return (self.kernel_size, self.output_size, self.output_ratio, True, self.random_samples, seed)


# --------------------------------------------------------------------------- dask blocks and checks


class _DaskCall(NamedTuple):
    op: str
    dims: int
    plan: FractionalPlan
    samples: Optional[np.ndarray]  # the whole call's samples, or None to draw from seed
    seed: np.uint64
    return_indices: bool


def _dask_checking_options(options) -> dict:
    """Zero-batch checking: samples of no plane (``prepare`` checks the real ones); a Generator seed
    must not advance."""
    replaced = {"seed": None if options["seed"] is None else 0}
    shape = () if options["_random_samples"] is None else tuple(np.shape(options["_random_samples"]))
    if len(shape) == 3:
        replaced["_random_samples"] = np.zeros((0, *shape[1:]))
    return replaced


def _dask_prepare(options, op):
    x = options["x"]
    dims = x.ndim - 2
    window = (options["kernel_size"], options["output_size"], options["output_ratio"])
    call = plan(op, dims, x.shape, *window, options["channels_last"])
    samples, seed = options["_random_samples"], np.uint64(0)
    if samples is not None:
        samples = checked_samples(samples, call, x.dtype, op)
    else:
        seed = np.uint64(int(_rng.seed_from(options["seed"], op)))
    return _DaskCall(op, dims, call, samples, seed, options["return_indices"])


def _dask_block(x, origin, shared: _DaskCall):
    """One block of whole planes, ``origin`` its first (n, c): the windows of those planes in the whole call."""
    whole = shared.plan
    call = plan(shared.op, shared.dims, x.shape, whole.kernel, whole.output_spatial, None, whole.layout.channels_last)
    n, c = origin
    if shared.samples is not None:
        samples = shared.samples[n : n + call.batch, c : c + call.channels]
    else:
        samples = drawn_samples(shared.seed, origin, shared.plan.channels, call.samples_shape, x.dtype)
    return run(cpu, x, call, samples, shared.return_indices)


def _selfcheck(functions, rng, put, to_host):
    x = rng.standard_normal((2, 3, int(rng.integers(5, 12)), int(rng.integers(5, 12)))).astype(np.float32)
    kernel = tuple(int(k) for k in rng.integers(1, 4, 2))
    size = tuple(int(rng.integers(1, length - k + 2)) for length, k in zip(x.shape[2:], kernel))
    samples = rng.random((2, 3, 2)).astype(np.float32)
    y, indices = functions.fractional_max_pool2d(put(x), kernel, size, return_indices=True, _random_samples=samples)
    expected_y, expected_indices = reference.fractional_max_pool(x, kernel, size, samples)
    checks.expect_equal(to_host(y), expected_y, "fractional_max_pool2d values")
    checks.expect_equal(to_host(indices), expected_indices, "fractional_max_pool2d indices")
    grad = rng.standard_normal(expected_y.shape).astype(np.float32)
    got = functions.fractional_max_pool2d_backward(put(grad), indices, x.shape)
    expected = reference.max_pool_backward(grad, expected_indices, x.shape[2:])
    checks.expect_close(to_host(got), expected, "fractional_max_pool2d_backward")


def _device_checks(functions, channels_last):
    def forward(x, gradient_like):
        spatial = x.shape[1:-1] if channels_last else x.shape[2:]
        size = tuple(max(1, math.ceil(length * 0.6)) for length in spatial)
        return functions.fractional_max_pool2d(x, 2, size, return_indices=True, seed=7, channels_last=channels_last)

    def backward(x, gradient_like):
        y, indices = forward(x, gradient_like)
        return functions.fractional_max_pool2d_backward(gradient_like(y), indices, x.shape, channels_last=channels_last)

    return {"fractional max fwd": (forward, "exact"), "fractional max bwd": (backward, "exact")}


def _warm(functions, dims, x, channels_last):
    pool = getattr(functions, f"fractional_max_pool{dims}d")
    y, indices = pool(x, 2, output_ratio=0.5, return_indices=True, seed=0, channels_last=channels_last)
    backward = getattr(functions, f"fractional_max_pool{dims}d_backward")
    backward(checks.warm_gradient(y), indices, x.shape, channels_last=channels_last)


def _ptx_forward(t):
    from ..backends.cuda import fractional_pool as kernels

    starts = t.array(np.int64, 3, "C")
    return kernels._fractional_max_forward, (t.data, t.data, t.index, starts, starts, starts, t.triple, t.flag)


class Kernels(Protocol):
    """Fractional max pooling's entries of the backend contract (canonical (N, C, D, H, W) views; its
    backward is ``routed_backward`` of :class:`numba_pool.backends.contract.RoutedKernels`)."""

    def fractional_max_pool_forward(self, x, starts, kernel, out, indices) -> None:
        """Each window's maximum into ``out``, its flat plane index into ``indices`` unless that is None;
        ``starts`` per canonical axis a host (N, C, out length) int64 array, ``kernel`` three ints."""

    def fractional_samples_to_host(self, samples):
        """A host NumPy copy of this backend's ``samples`` (the windows are planned on the host)."""


# --------------------------------------------------------------------------- fractional average pooling
# TensorFlow's tf.nn.fractional_avg_pool: one cumulative pooling sequence per spatial axis, shared by
# every plane; window i spans sequence[i] .. sequence[i + 1] (one element further when overlapping).

# A sequence's draws use counters axis * _AXIS_COUNTERS + j, so no two axes share one.
_AXIS_COUNTERS = 2**32


def pseudo_random_sequence(length: int, count: int, u: float) -> np.ndarray:
    """Graham's pseudo-random cumulative sequence as TensorFlow generates it, for ``u`` in (0, max_u]
    (``pseudo_random_limit``): a_i = ceil(alpha * (i + u)), alpha = length / count, steps of k or k + 1."""
    alpha = length / count
    inner = np.ceil(alpha * (np.arange(1, count) + u)).astype(np.int64) - 1  # a_i counts from 1, TensorFlow's a_0
    return np.concatenate([[0], inner, [length]]).astype(np.int64)


def pseudo_random_limit(length: int, count: int) -> float:
    """The largest u that keeps every step of the pseudo-random sequence k or k + 1 (k = length // count)."""
    alpha, k = length / count, length // count
    return min((k + 2) / alpha - 1, (length + 1 - k) / alpha - (count - 1))


def random_sequence(length: int, count: int, draws: np.ndarray) -> np.ndarray:
    """Steps of k + 1 (length % count of them) and k, shuffled by Fisher-Yates with ``draws`` in [0, 1)
    (draws[j - 1] picks the partner of step j, from the last step down), then summed from 0."""
    k, longer = divmod(length, count)
    steps = np.full(count, k, np.int64)
    steps[:longer] += 1
    for j in range(count - 1, 0, -1):
        partner = min(int(draws[j - 1] * (j + 1)), j)
        steps[j], steps[partner] = steps[partner], steps[j]
    return np.concatenate([[0], np.cumsum(steps)]).astype(np.int64)


def pooling_sequence(length: int, count: int, seed, axis: int, pseudo_random: bool) -> np.ndarray:
    """The cumulative sequence (count + 1 ints from 0 to length) of one spatial axis, drawn from the
    counter-based generator at counters ``axis * 2**32 + j``."""
    first = axis * _AXIS_COUNTERS
    if pseudo_random:
        draw = _rng.uniforms(np.uint64(seed), np.array([first], np.int64))[0]
        return pseudo_random_sequence(length, count, (1.0 - draw) * pseudo_random_limit(length, count))  # u > 0
    draws = _rng.uniforms(np.uint64(seed), np.arange(first, first + max(count - 1, 0), dtype=np.int64))
    return random_sequence(length, count, draws)


def avg_sequences(spatial, output_spatial, seed, pseudo_random) -> tuple[np.ndarray, ...]:
    """Per spatial axis of the op, its cumulative pooling sequence."""
    return tuple(
        pooling_sequence(length, count, seed, axis, pseudo_random)
        for axis, (length, count) in enumerate(zip(spatial, output_spatial))
    )


def avg_bins(spatial, sequences, overlapping) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """Canonical (D, H, W) bins (2, out) of [start, stop) and the covering bins (2, length) of each position
    (``reference.fractional_avg_windows``), one bin of one element for the axes the op lacks."""
    missing = _spec.CANONICAL_SPATIAL_DIMS - len(spatial)
    bins = [np.array([[0], [1]], np.int64)] * missing
    for sequence, length in zip(sequences, spatial):
        stops = np.minimum(sequence[1:] + (1 if overlapping else 0), length)
        bins.append(np.stack([sequence[:-1], stops]).astype(np.int64))
    lengths = (1,) * missing + tuple(spatial)
    return tuple(bins), tuple(_spec.covering_bins(b, length) for b, length in zip(bins, lengths))


def _avg_output_spatial(op, spatial, output_size, output_ratio) -> tuple[int, ...]:
    dims = len(spatial)
    if (output_size is None) == (output_ratio is None):
        given = "both" if output_size is not None else "neither"
        raise ValueError(f"{op}: give exactly one of output_size and output_ratio; got {given}")
    if output_size is None:
        return _output_from_ratio(output_ratio, spatial, op)
    sizes = _spec.size_tuple(output_size, dims, "output_size", op, 1)
    if any(count > length for count, length in zip(sizes, spatial)):
        raise ValueError(f"{op}: output_size {sizes} must be at most the input's spatial size {tuple(spatial)}")
    return sizes


def _avg_flags(op, channels_last, pseudo_random, overlapping) -> tuple[bool, bool, bool]:
    names = ("channels_last", "pseudo_random", "overlapping")
    return tuple(_spec.check_flag(value, name, op) for value, name in zip((channels_last, pseudo_random, overlapping), names))


def _check_int_seed(seed, op) -> np.uint64:
    """The backward's seed: the int the forward was given (a fresh or Generator seed cannot be replayed)."""
    if not _spec.is_integer(seed):
        raise TypeError(
            f"{op}: seed must be the int from 0 to 2**64 - 1 given to the forward (its windows are replayed); "
            f"got {seed!r} of type {type(seed).__name__}"
        )
    return _rng.seed_from(seed, op)


def fractional_avg_pool(
    dims: int,
    x: np.ndarray,
    output_size: Optional[IntOrTuple] = None,
    output_ratio: Optional[FloatOrTuple] = None,
    pseudo_random: bool = False,
    overlapping: bool = False,
    seed: Union[int, np.random.Generator, None] = None,
    *,
    channels_last: bool = False,
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    op = f"fractional_avg_pool{dims}d"
    channels_last, pseudo_random, overlapping = _avg_flags(op, channels_last, pseudo_random, overlapping)
    backend = backend_for(op, x=x, out=out)
    x, layout, (batch, channels, spatial) = front.global_input(backend, op, dims, x, channels_last, _spec.FLOAT_DTYPES)
    output_spatial = _avg_output_spatial(op, spatial, output_size, output_ratio)
    y = None if out is None else backend.check_out(out, layout.join(batch, channels, output_spatial), x.dtype, op, x)
    sequences = avg_sequences(spatial, output_spatial, _rng.seed_from(seed, op), pseudo_random)  # last: see max
    return avg_run(backend, x, layout, sequences, overlapping, y)


def avg_run(backend, x, layout, sequences, overlapping, out=None):
    """The mean of each window that ``sequences`` (one per spatial axis) and ``overlapping`` give."""
    batch, channels, spatial = layout.split(x.shape)
    output_spatial = tuple(len(s) - 1 for s in sequences)
    last = front.memory_is_channels_last(layout, x)
    y = layout.empty(batch, channels, output_spatial, x.dtype, last, front.allocator(backend, x)) if out is None else out
    bins, _ = avg_bins(spatial, sequences, overlapping)
    backend.adaptive_avg_pool_forward(layout.canonical(x), bins, layout.canonical(y))
    return backend.export(y)


def fractional_avg_pool_backward(
    dims: int,
    grad_output: np.ndarray,
    input_shape: Sequence[int],
    seed: int,
    pseudo_random: bool = False,
    overlapping: bool = False,
    *,
    channels_last: bool = False,
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    op = f"fractional_avg_pool{dims}d_backward"
    channels_last, pseudo_random, overlapping = _avg_flags(op, channels_last, pseudo_random, overlapping)
    backend = backend_for(op, grad_output=grad_output, out=out)
    grad_output, input_shape, layout, spatial, output_spatial = front.gradient_against_input(
        backend, op, dims, grad_output, input_shape, channels_last
    )
    if any(count > length for count, length in zip(output_spatial, spatial)):
        raise ValueError(f"{op}: grad_output's spatial size {output_spatial} must be at most input_shape's {spatial}")
    sequences = avg_sequences(spatial, output_spatial, _check_int_seed(seed, op), pseudo_random)
    bins, covers = avg_bins(spatial, sequences, overlapping)
    grad_input = front.gradient_output(backend, op, layout, input_shape, grad_output, out, grad_output)
    backend.adaptive_avg_pool_backward(layout.canonical(grad_output), bins, covers, layout.canonical(grad_input))
    return backend.export(grad_input)


def avg_forward_doc(dims: int) -> str:
    spatial = docs.SPATIAL_NAMES[dims]
    return f"""{dims}-D fractional average pooling, with TensorFlow's semantics (``tf.nn.fractional_avg_pool``).

Along an axis of length ``L`` with ``out`` outputs, a cumulative pooling
sequence ``0 = s_0 < s_1 < ... < s_out = L`` with steps of ``k = L // out``
or ``k + 1`` is drawn, one per axis and call (every plane shares it, as in
TensorFlow); output ``i`` is the mean of ``s_i <= position < s_(i+1)``, or of
one element more (the boundary it shares with the next window, clipped to the
input) when ``overlapping``. ``pseudo_random=True`` gives Graham's
pseudo-random sequence ``s_i = ceil(alpha * (i + u)) - 1`` (``alpha = L /
out``, ``u`` in (0, u_max] as TensorFlow bounds it), otherwise the steps are a
random shuffle of ``L % out`` steps of ``k + 1`` and the rest of ``k``.
Sums are float64 on the CPU.

Parameters
----------
x : numpy.ndarray
    Input of shape (N, C) + {spatial} or unbatched (C,) + {spatial};
    {docs.FLOATS}. Any strides.
output_size : int or tuple of {dims} ints, optional
    Output size, from 1 to the input's size per axis. TensorFlow's
    ``pooling_ratio`` p (input / output, >= 1) is ``output_size = floor(L / p)``.
output_ratio : float or tuple of {dims} floats, optional
    Output size as ``int(L * ratio)``, each ratio in (0, 1), as for
    ``fractional_max_pool{dims}d`` (the inverse of TensorFlow's
    ``pooling_ratio``). Give exactly one of ``output_size`` and ``output_ratio``.
pseudo_random : bool, default False
    Graham's pseudo-random sequence instead of a random one.
overlapping : bool, default False
    Each window also takes the boundary element it shares with the next.
seed : int, numpy.random.Generator or None
    The sequences come from numba_pool's counter-based generator (counters
    ``axis * 2**32 + j``), so a seed gives the same windows on every backend
    and dask chunking. ``None`` draws a fresh seed; a Generator gives one seed
    per call and advances. Pass an int to take the gradient with
    ``fractional_avg_pool{dims}d_backward``.
{docs.LAYOUT_DOC}
out : numpy.ndarray, optional
    Preallocated output of the right shape and dtype.

Returns
-------
numpy.ndarray
    The pooled array.

{docs.RAISES_DOC}

Examples
--------
>>> import numpy as np, numba_pool
>>> x = np.arange(10.0).reshape((1, 1) + (1,) * {dims - 1} + (10,))
>>> numba_pool.fractional_avg_pool{dims}d(x, (1,) * {dims - 1} + (5,), seed=0).ravel()
array([0.5, 2.5, 4.5, 6.5, 8.5])
"""


def avg_backward_doc(dims: int) -> str:
    return f"""Gradient of ``fractional_avg_pool{dims}d``: each output's gradient spread evenly over its window.

The windows are drawn again from ``seed``; each input element gathers the
shares of the windows holding it (deterministic, no atomics).

Parameters
----------
grad_output : numpy.ndarray
    Gradient with respect to the pooled output; {docs.FLOATS} (its
    spatial size is the output size).
input_shape : tuple of int
    Shape of the forward input.
seed : int
    The int seed given to the forward.
pseudo_random, overlapping : bool
    As given to the forward.
{docs.LAYOUT_DOC}
{docs.BACKWARD_OUT_DOC.format(shape="``input_shape``", read="``grad_output``")}

Returns
-------
numpy.ndarray
    Gradient with respect to the input.

{docs.RAISES_DOC}

Examples
--------
>>> import numpy as np, numba_pool
>>> grad = np.ones((1, 1) + (1,) * {dims - 1} + (2,))
>>> numba_pool.fractional_avg_pool{dims}d_backward(grad, (1, 1) + (1,) * {dims - 1} + (4,), 0).ravel()
array([0.5, 0.5, 0.5, 0.5])
"""


class AvgLayer(LinearLayer):
    """Draws fresh windows on every forward from its own generator (seeded by ``seed``: a layer built with
    the same seed replays the same windows); its backward replays the latest forward's."""

    def __init__(
        self,
        output_size: Optional[IntOrTuple] = None,
        output_ratio: Optional[FloatOrTuple] = None,
        pseudo_random: bool = False,
        overlapping: bool = False,
        seed: Union[int, np.random.Generator, None] = None,
        *,
        channels_last: bool = False,
        reuse_buffers: bool = False,
    ) -> None:
        super().__init__(channels_last, reuse_buffers)
        self.output_size, self.output_ratio = output_size, output_ratio
        self.pseudo_random, self.overlapping = pseudo_random, overlapping
        self._generator = np.random.default_rng(seed)
        self._seed = None

    def pool_arguments(self) -> tuple:
        self._seed = int(self._generator.integers(0, 2**63))  # each forward's windows, kept for its backward
        return (self.output_size, self.output_ratio, self.pseudo_random, self.overlapping, self._seed)

    def backward_arguments(self) -> tuple:
        return (self._seed, self.pseudo_random, self.overlapping)


def _avg_dask_checking_options(options) -> dict:
    return {"seed": None if options["seed"] is None else 0}


def _avg_dask_prepare(options, op):
    """One seed for every block: the windows depend on the seed and the axis only."""
    seed = int(_rng.seed_from(options["seed"], op))
    keep = ("output_size", "output_ratio", "pseudo_random", "overlapping", "channels_last")
    return op, seed, {name: options[name] for name in keep}


def _avg_dask_block(x, origin, shared):
    op, seed, options = shared
    return fractional_avg_pool(x.ndim - 2, x, seed=seed, **options)


def _avg_selfcheck(functions, rng, put, to_host):
    x = rng.standard_normal((2, 3, int(rng.integers(3, 12)), int(rng.integers(3, 12)))).astype(np.float32)
    size = tuple(int(rng.integers(1, length + 1)) for length in x.shape[2:])
    pseudo_random, overlapping, seed = bool(rng.random() < 0.5), bool(rng.random() < 0.5), int(rng.integers(1000))
    sequences = avg_sequences(x.shape[2:], size, seed, pseudo_random)
    y = functions.fractional_avg_pool2d(put(x), size, None, pseudo_random, overlapping, seed)
    checks.expect_close(to_host(y), reference.fractional_avg_pool(x, sequences, overlapping), "fractional_avg_pool2d")
    grad = rng.standard_normal(y.shape).astype(np.float32)
    got = functions.fractional_avg_pool2d_backward(put(grad), x.shape, seed, pseudo_random, overlapping)
    expected = reference.fractional_avg_pool_backward(grad, x.shape[2:], sequences, overlapping)
    checks.expect_close(to_host(got), expected, "fractional_avg_pool2d_backward")


def _avg_device_checks(functions, channels_last):
    def forward(x, gradient_like):
        spatial = x.shape[1:-1] if channels_last else x.shape[2:]
        size = tuple(max(1, (2 * length) // 3) for length in spatial)
        return functions.fractional_avg_pool2d(x, size, None, True, True, 7, channels_last=channels_last)

    def backward(x, gradient_like):
        y = forward(x, gradient_like)
        return functions.fractional_avg_pool2d_backward(gradient_like(y), x.shape, 7, True, True, channels_last=channels_last)

    return {"fractional avg fwd": (forward, "close"), "fractional avg bwd": (backward, "close")}


def _avg_warm(functions, dims, x, channels_last):
    y = getattr(functions, f"fractional_avg_pool{dims}d")(x, output_ratio=0.5, seed=0, channels_last=channels_last)
    backward = getattr(functions, f"fractional_avg_pool{dims}d_backward")
    backward(checks.warm_gradient(y), x.shape, 0, channels_last=channels_last)


AVG_SPEC = OpSpec(
    "fractional_avg_pool",
    Direction("", fractional_avg_pool, avg_forward_doc),
    (Direction("_backward", fractional_avg_pool_backward, avg_backward_doc),),
    layer="FractionalAvgPool",
    kernels=adaptive_pool.AvgKernels,  # its windows are bins per axis: adaptive average pooling's entries run them
    saves="input_shape",
    dask="planes",
    planes=PlaneBlocks(_avg_dask_checking_options, _avg_dask_prepare, _avg_dask_block),
    selfcheck=SelfCheck("fractional_avg_pool2d (forward, backward)", _avg_selfcheck),
    device_checks=_avg_device_checks,
    warm=_avg_warm,
    cuda_kernels=(),  # adaptive average pooling's, compiled with that op
    reference=reference.fractional_avg_pool,
    layer_class=AvgLayer,
    channels_last_output=(),  # no PyTorch counterpart: as fractional max pooling
)


SPEC = OpSpec(
    "fractional_max_pool",
    Direction("", fractional_max_pool, forward_doc),
    (Direction("_backward", fractional_max_pool_backward, backward_doc),),
    layer="FractionalMaxPool",
    kernels=Kernels,
    saves="indices",
    dask="planes",
    planes=PlaneBlocks(_dask_checking_options, _dask_prepare, _dask_block),
    selfcheck=SelfCheck("fractional_max_pool2d (values, indices, backward)", _selfcheck),
    device_checks=_device_checks,
    warm=_warm,
    cuda_kernels=(CudaKernel("fractional max forward", _ptx_forward),),
    reference=reference.fractional_max_pool,
    layer_class=Layer,
    channels_last_output=(),  # PyTorch's module returns contiguous memory for channels-last input
)

SPECS = (SPEC, AVG_SPEC)
