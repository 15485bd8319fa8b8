"""float16 (and bfloat16) on every op and backend: each result is the float32 result on the same values,
rounded once to nearest (ties to even); against the reference and PyTorch's half-precision ops."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

import numba_pool as nb
from numba_pool import reference
from numba_pool.backends import rules
from numba_pool.backends.cpu import _half as cpu_half
from numba_pool.tools import selfcheck
from cases import nan_heavy_values, random_values, strided_view
from helpers import op

HALF = np.float16


# --------------------------------------------------------------------------- the bit conversions


@njit(cache=True)
def _widen_all(halves, out):
    for i in range(halves.size):
        out[i] = rules.float32_bits_of_float16(halves[i])


@njit(cache=True)
def _narrow_all(singles, out):
    for i in range(singles.size):
        out[i] = rules.float16_bits_of_float32(singles[i])


def test_widening_rule_is_numpys_cast_for_every_float16():
    halves = np.arange(2**16, dtype=np.uint16)
    singles = np.empty(halves.size, np.uint32)
    _widen_all(halves, singles)
    np.testing.assert_array_equal(singles, halves.view(HALF).astype(np.float32).view(np.uint32))


def _hard_float32_bits(rng) -> np.ndarray:
    """Random patterns, every float16 widened, and the float32s next to and halfway between float16s
    (normal ones: 0x1000 past them; subnormal ones: odd multiples of 2**-25), NaNs with low payloads."""
    widened = np.arange(2**16, dtype=np.uint16).view(HALF).astype(np.float32).view(np.uint32).astype(np.int64)
    subnormal_halfway = (np.arange(1, 2**11, 2) * 2.0**-25).astype(np.float32).view(np.uint32).astype(np.int64)
    patterns = [rng.integers(0, 2**32, 500_000), subnormal_halfway, subnormal_halfway | 2**31, [0x7F800001, 0xFF800FFF]]
    patterns += [widened + step for step in (-1, 1, 0xFFF, 0x1000, 0x1001, 0x2000)]
    return (np.concatenate(patterns) % 2**32).astype(np.uint32)


def test_narrowing_rule_is_numpys_round_to_nearest_even():
    singles = _hard_float32_bits(np.random.default_rng(0))
    halves = np.empty(singles.size, np.uint16)
    _narrow_all(singles, halves)
    with np.errstate(over="ignore"):
        expected = singles.view(np.float32).astype(HALF).view(np.uint16)
    np.testing.assert_array_equal(halves, expected)


def test_nan_payloads_survive_the_round_trip_on_both_backends():
    halves = np.arange(2**16, dtype=np.uint16)
    singles = np.empty(halves.size, np.uint32)
    back = np.empty(halves.size, np.uint16)
    _widen_all(halves, singles)
    _narrow_all(singles, back)
    np.testing.assert_array_equal(back, halves)  # the CUDA rules
    wide = cpu_half.WIDENING.widen(halves.view(HALF))
    narrow = np.empty(halves.size, HALF)
    cpu_half.WIDENING.narrow_into(wide, narrow)
    np.testing.assert_array_equal(narrow.view(np.uint16), halves)  # the CPU's NumPy casts


@pytest.mark.parallel_kernels  # the library's threshold: small calls run serial, large ones parallel
@pytest.mark.parametrize("view", ["contiguous", "step", "reversed", "fortran", "channels_last"])
@pytest.mark.parametrize("size", [(1, 3, 5, 4), (2, 8, 24, 24)])
def test_cpu_float16_conversions_in_any_memory_order(view, size):
    rng = np.random.default_rng(2)
    x = _half_values(rng, size)
    if view == "channels_last":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    else:
        x = strided_view(x, view)
    wide = cpu_half.WIDENING.widen(x)
    np.testing.assert_array_equal(wide.view(np.uint32), x.astype(np.float32).view(np.uint32))
    assert list(np.argsort(np.abs(wide.strides))) == list(np.argsort(np.abs(x.strides)))  # the same memory order
    singles = (rng.standard_normal(size) * 1e3).astype(np.float32)
    target = strided_view(np.zeros(size, HALF), "step" if view == "step" else "contiguous")
    cpu_half.WIDENING.narrow_into(singles, target)
    np.testing.assert_array_equal(target.view(np.uint16), singles.astype(HALF).view(np.uint16))


def test_bfloat16_conversions_match_ml_dtypes():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    bfloat16 = np.dtype(ml_dtypes.bfloat16)
    every = np.arange(2**16, dtype=np.uint16).view(bfloat16)
    wide = cpu_half.WIDENING.widen(every)
    assert wide.dtype == np.float32
    np.testing.assert_array_equal(wide.view(np.uint32) >> 16, every.view(np.uint16))  # exact, payloads too
    singles = _hard_float32_bits(np.random.default_rng(1)).view(np.float32)
    narrow = np.empty(singles.size, bfloat16)
    cpu_half.WIDENING.narrow_into(singles, narrow)
    numbers = ~np.isnan(singles)
    np.testing.assert_array_equal(narrow[numbers].view(np.uint16), singles[numbers].astype(bfloat16).view(np.uint16))
    assert np.isnan(narrow[~numbers].astype(np.float32)).all()
    back = np.empty(every.size, bfloat16)
    cpu_half.WIDENING.narrow_into(wide, back)
    np.testing.assert_array_equal(back.view(np.uint16), every.view(np.uint16))


# --------------------------------------------------------------------------- every op of the registry


def _half_values(rng, shape) -> np.ndarray:
    """float16 values with ties, infinities, NaNs, and a few that float16 rounds (large, tiny)."""
    values = random_values(rng, shape, np.float64)
    values[rng.random(shape) < 0.05] *= 3e4
    values[rng.random(shape) < 0.05] *= 1e-6
    with np.errstate(over="ignore"):
        return values.astype(HALF)


def test_the_registry_calls_cover_every_op():
    names = " ".join(selfcheck._registry_calls(nb, False))
    for word in ("max fwd", "max bwd", "avg fwd", "avg bwd", "stochastic", "lp", "unpool", "global", "adaptive"):
        assert word in names, word


def put(backend, array, view="contiguous"):
    return backend.put(array, view)


@pytest.mark.parametrize("seed", range(2))
def test_every_op_in_float16_is_its_float32_result_rounded_once(backend, seed):
    """numba-pool check's float16 line: every op's device checks, float16 against float32 rounded once."""
    rng = np.random.default_rng([15, seed])
    selfcheck.half_precision_check(nb, rng, lambda array: put(backend, array), backend.get)


# --------------------------------------------------------------------------- against the reference


def _ordered(values: np.ndarray) -> np.ndarray:
    """float16 bit patterns as integers in the order of the values (so a difference counts ulps)."""
    bits = values.astype(HALF).view(np.int16).astype(np.int64)
    return np.where(bits < 0, -(bits & 0x7FFF), bits)


def assert_within_one_ulp(got: np.ndarray, exact: np.ndarray, err_msg: str = "") -> None:
    """``got`` (float16) is ``exact`` rounded to float16, or one of its float16 neighbours; NaN where it is NaN."""
    assert got.dtype == HALF
    with np.errstate(over="ignore", invalid="ignore"):
        rounded = exact.astype(HALF)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(rounded), err_msg=err_msg)
    numbers = ~np.isnan(rounded)
    distance = np.abs(_ordered(got[numbers]) - _ordered(rounded[numbers]))
    assert distance.max(initial=0) <= 1, f"{err_msg}: {distance.max()} ulps"


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_max_pooling_is_exact_with_nans_and_ties(backend, dims):
    rng = np.random.default_rng(dims)
    x = nan_heavy_values(rng, (2, 3) + (5,) * dims, HALF)
    kernel, stride, padding, dilation = 3, 2, 1, 1
    y, indices = backend.get(op("max_pool", dims)(put(backend, x), kernel, stride, padding, return_indices=True))
    expected, expected_indices = reference.max_pool(
        x.astype(np.float32), (kernel,) * dims, (stride,) * dims, (padding,) * dims, (dilation,) * dims, False
    )
    np.testing.assert_array_equal(y.view(np.uint16), expected.astype(HALF).view(np.uint16))
    np.testing.assert_array_equal(indices, expected_indices)
    grad = rng.standard_normal(y.shape).astype(HALF)
    got = backend.get(op("max_pool", dims, "backward")(put(backend, grad), put(backend, indices), x.shape))
    exact = reference.max_pool_backward(grad.astype(np.float64), indices, x.shape[2:])
    assert_within_one_ulp(got, exact, "max backward")


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_sums_are_within_one_float16_ulp_of_the_exact_result(backend, dims):
    rng = np.random.default_rng(10 + dims)
    x = (rng.standard_normal((2, 2) + (5,) * dims) * 3).astype(HALF)
    window = ((3,) * dims, (2,) * dims, (1,) * dims)
    wide = x.astype(np.float64)
    y = backend.get(op("avg_pool", dims)(put(backend, x), 3, 2, 1, count_include_pad=False))
    assert_within_one_ulp(y, reference.avg_pool(wide, *window, False, False, None), "avg")
    grad = rng.standard_normal(y.shape).astype(HALF)
    got = backend.get(op("avg_pool", dims, "backward")(put(backend, grad), x.shape, 3, 2, 1, count_include_pad=False))
    exact = reference.avg_pool_backward(grad.astype(np.float64), x.shape[2:], *window, False, False, None)
    assert_within_one_ulp(got, exact, "avg backward")
    adaptive = backend.get(op("adaptive_avg_pool", dims)(put(backend, x), 4))
    assert_within_one_ulp(adaptive, reference.adaptive_avg_pool(wide, (4,) * dims), "adaptive avg")
    pooled = backend.get(op("global_avg_pool", dims)(put(backend, x)))
    assert_within_one_ulp(pooled, reference.global_avg_pool(wide), "global avg")
    lp = backend.get(op("lp_pool", dims)(put(backend, np.abs(x)), 2, 3, 2))
    assert_within_one_ulp(lp, reference.lp_pool(np.abs(wide), 2, (3,) * dims, (2,) * dims, False, (0,) * dims), "lp")
    inference = backend.get(op("stochastic_pool", dims)(put(backend, x), 3, 2, training=False))
    exact = reference.stochastic_pool_inference(wide, (3,) * dims, (2,) * dims, (0,) * dims, False)
    assert_within_one_ulp(inference, exact, "stochastic inference")


def test_stochastic_samples_are_those_of_the_widened_input(backend):
    x = np.abs(_half_values(np.random.default_rng(3), (2, 3, 7, 6)))
    for seed in range(3):
        y, indices = backend.get(nb.stochastic_pool2d(put(backend, x), 3, 2, seed=seed, return_indices=True))
        wide_y, wide_indices = backend.get(
            nb.stochastic_pool2d(put(backend, x.astype(np.float32)), 3, 2, seed=seed, return_indices=True)
        )
        np.testing.assert_array_equal(indices, wide_indices)
        np.testing.assert_array_equal(y, wide_y.astype(HALF))


@pytest.mark.backends("cpu", "cuda")
def test_out_and_strided_views_in_float16(backend):
    rng = np.random.default_rng(4)
    x = _half_values(rng, (2, 3, 6, 5))
    out = put(backend, np.zeros((2, 3, 3, 2), HALF), "step")
    returned = nb.avg_pool2d(put(backend, x, "step"), 2, out=out)
    expected = nb.avg_pool2d(x.astype(np.float32), 2).astype(HALF)
    np.testing.assert_array_equal(backend.get(returned), expected)
    np.testing.assert_array_equal(backend.get(out), expected)


def test_zero_batches_and_unbatched_input_in_float16(backend):
    empty = put(backend, np.zeros((0, 3, 6, 6), HALF))
    assert backend.get(nb.max_pool2d(empty, 2)).shape == (0, 3, 3, 3)
    assert backend.get(nb.global_avg_pool2d(empty)).dtype == HALF
    x = _half_values(np.random.default_rng(7), (3, 6, 6))
    got = backend.get(nb.avg_pool2d(put(backend, x), 2))
    np.testing.assert_array_equal(got, nb.avg_pool2d(x.astype(np.float32), 2).astype(HALF))


def test_ml_dtypes_bfloat16_on_the_cpu():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    bfloat16 = ml_dtypes.bfloat16
    x = random_values(np.random.default_rng(5), (2, 3, 7, 6), np.float32).astype(bfloat16)
    y, indices = nb.max_pool2d(x, 3, 2, 1, return_indices=True)
    wide_y, wide_indices = nb.max_pool2d(x.astype(np.float32), 3, 2, 1, return_indices=True)
    assert y.dtype == bfloat16
    np.testing.assert_array_equal(indices, wide_indices)
    np.testing.assert_array_equal(y.view(np.uint16), wide_y.astype(bfloat16).view(np.uint16))
    finite = random_values(np.random.default_rng(6), (2, 3, 7, 6), np.float32, special=False).astype(bfloat16)
    means = nb.avg_pool2d(finite, 3, 2)
    expected = nb.avg_pool2d(finite.astype(np.float32), 3, 2).astype(bfloat16)
    np.testing.assert_array_equal(means.view(np.uint16), expected.view(np.uint16))
    grad = nb.max_pool2d_backward(np.ones(y.shape, bfloat16), indices, x.shape)
    assert grad.dtype == bfloat16


@pytest.mark.parametrize(
    "make",
    [
        lambda: nb.MaxPool2d(3, 2, 1),
        lambda: nb.AvgPool2d(2, reuse_buffers=True),
        lambda: nb.StochasticPool2d(2, seed=4),
        lambda: nb.StochasticPool2d(2).eval(),
        lambda: nb.LpPool2d(2, 2),
        lambda: nb.AdaptiveAvgPool2d(3),
        lambda: nb.GlobalMaxPool2d(),
    ],
)
def test_layers_in_float16(make):
    x = np.abs(_half_values(np.random.default_rng(8), (2, 3, 6, 5)))
    layer, wide_layer = make(), make()
    y, wide_y = layer(x), wide_layer(x.astype(np.float32))
    np.testing.assert_array_equal(y, wide_y.astype(HALF))
    grad = np.random.default_rng(9).standard_normal(y.shape).astype(HALF)
    for _ in range(2):  # twice: a reused buffer keeps float16
        got = layer.backward(grad)
    np.testing.assert_array_equal(got, wide_layer.backward(grad.astype(np.float32)).astype(HALF))


# --------------------------------------------------------------------------- bad arguments


def test_half_precision_errors(backend):
    x = put(backend, np.ones((1, 1, 4, 4), HALF))
    if backend.name != "dask":  # dask takes no out=
        with pytest.raises(TypeError, match=r"^avg_pool2d: out must have dtype float16"):
            nb.avg_pool2d(x, 2, out=put(backend, np.zeros((1, 1, 2, 2), np.float32)))
    grad = put(backend, np.ones((1, 1, 2, 2), np.float32))
    with pytest.raises(TypeError, match=r"^lp_pool2d_backward: grad_output has dtype float32 but x has dtype float16"):
        nb.lp_pool2d_backward(grad, x, 2, 2)
    with pytest.raises(TypeError, match=r"^stochastic_pool2d_inference_backward: grad_output has dtype float32"):
        nb.stochastic_pool2d_inference_backward(grad, x, 2)


@pytest.mark.backends("cuda")
def test_bfloat16_device_arrays_are_refused_naming_the_parameter(backend):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    from numba_pool.backends import cuda_backend

    view = cuda_backend()._arrays.DeviceView(None, "numba", (1, 1, 4), (8, 8, 2), np.dtype(ml_dtypes.bfloat16))
    with pytest.raises(TypeError, match=r"^max_pool1d: x is a bfloat16 device array"):
        nb.max_pool1d(view, 2)


# --------------------------------------------------------------------------- PyTorch's half-precision ops


torch_families = {
    # module name and arguments, torch.nn.functional call
    "MaxPool": ((3, 2, 1), lambda F, t: F.max_pool2d(t, 3, 2, 1)),
    "AvgPool": ((3, 2, 1), lambda F, t: F.avg_pool2d(t, 3, 2, 1)),
    "AdaptiveAvgPool": ((3,), lambda F, t: F.adaptive_avg_pool2d(t, 3)),
    "AdaptiveMaxPool": ((3,), lambda F, t: F.adaptive_max_pool2d(t, 3)),
    "LpPool": ((2, 3, 2), lambda F, t: F.lp_pool2d(t, 2, 3, 2)),
}


@pytest.mark.parametrize("family", list(torch_families))
@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16"])
def test_torch_modules_match_pytorchs_half_ops(family, dtype_name):
    """Forward: PyTorch's float16/bfloat16 CPU pooling also rounds each result once, so max, average and
    adaptive pooling agree bit for bit (its Lp pooling rounds several times: close). Backward: ours is
    within one ulp of the exact gradient; PyTorch's rounds each contribution, so the two are only close."""
    torch = pytest.importorskip("torch")
    import numba_pool.torch as nt

    F = torch.nn.functional
    dtype = getattr(torch, dtype_name)
    arguments, theirs = torch_families[family]
    x = torch.randn(2, 3, 9, 8, generator=torch.Generator().manual_seed(0)).to(dtype)
    ours_x, their_x, exact_x = x.clone().requires_grad_(), x.clone().requires_grad_(), x.double().requires_grad_()
    ours_y = getattr(nt, f"{family}2d")(*arguments)(ours_x)
    their_y, exact_y = theirs(F, their_x), theirs(F, exact_x)
    assert ours_y.dtype == dtype
    if family == "LpPool":
        torch.testing.assert_close(ours_y, their_y, rtol=2e-2, atol=1e-2)
    else:
        assert torch.equal(ours_y, their_y)
    assert _torch_ulps(ours_y, exact_y.detach().to(dtype)) <= 1
    grad = torch.randn(ours_y.shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    for y, leaf in ((ours_y, ours_x), (their_y, their_x), (exact_y, exact_x)):
        y.backward(grad.to(y.dtype))
    assert ours_x.grad.dtype == dtype
    assert _torch_ulps(ours_x.grad, exact_x.grad.to(dtype)) <= 1
    torch.testing.assert_close(ours_x.grad, their_x.grad, rtol=2e-2, atol=1e-2)


def _torch_ulps(a, b) -> int:
    """The largest distance in ulps between two float16 or bfloat16 tensors (both sign-magnitude 16-bit)."""
    import torch

    def ordered(t):
        bits = t.detach().contiguous().view(torch.int16).to(torch.int64)
        return torch.where(bits < 0, -(bits & 0x7FFF), bits)

    return int((ordered(a) - ordered(b)).abs().max())


@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16"])
def test_torch_half_tensors_keep_their_dtype_outside_autocast(dtype_name):
    torch = pytest.importorskip("torch")
    import numba_pool.torch as nt

    dtype = getattr(torch, dtype_name)
    x = torch.randn(1, 2, 6, 6).to(dtype).requires_grad_()
    y = nt.StochasticPool2d(2, seed=1)(x)
    y.sum().backward()
    assert y.dtype == x.grad.dtype == dtype
    expected = nt.StochasticPool2d(2, seed=1)(x.detach().float())
    assert torch.equal(y, expected.to(dtype))  # the same picks as the float32 values


# --------------------------------------------------------------------------- the comparison benchmark


def test_the_benchmark_times_float16_next_to_float32():
    from numba_pool.tools import benchmark

    rows = list(benchmark.selected_cases(["avg_forward"], ["nchw"], quick=True, dtypes=benchmark.DTYPE_CHOICES["both"]))
    assert [row[-1] for row in rows[:2]] == ["float32", "float16"]
    case = benchmark.build_case("avg_forward", (1, 2, 6, 6), 2, 2, "nchw", np.dtype(HALF))
    assert case.label.endswith(" f16") and case.bytes_read == 2 * 72
    assert case.functions["numba_pool"]().dtype == HALF
    if "torch" in case.functions:
        assert str(case.functions["torch"]().dtype) == "torch.float16"
