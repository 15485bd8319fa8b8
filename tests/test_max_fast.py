"""The direct channels-first max kernel (windows of depth 1 and few taps, stride_w 1 or 2, no dilation)
against the separable kernel and the NumPy reference: same values, same indices, same NaN and tie rules."""

import numpy as np
import pytest

import numba_pool as nb
from numba_pool import reference
from numba_pool.backends.cpu import max_pool as cpu_max_pool
from helpers import serial_twin

# The kernels called directly below run as their serial twins, which the public calls for small
# arrays use too (the parallel kernels in three dtypes took 341 CPU-seconds of a cold test run).
_separable = serial_twin(cpu_max_pool._max_pool_forward_kernel)
_direct = serial_twin(cpu_max_pool._max_pool_forward_direct)


def random_config(rng):
    """(kernel, stride, padding, ceil_mode) of a 2-D pooling the direct kernel takes."""
    while True:
        kernel = (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
        if kernel[0] * kernel[1] <= cpu_max_pool.DIRECT_MAX_TAPS:
            break
    stride = (int(rng.integers(1, 4)), int(rng.choice([1, 2])))
    padding = tuple(int(rng.integers(0, k // 2 + 1)) for k in kernel)
    return kernel, stride, padding, bool(rng.integers(0, 2))


def random_input(rng, shape, kind):
    if kind == "ties":  # small integers: many equal maxima in each window
        return rng.integers(-2, 3, size=shape).astype(np.float32)
    if kind == "nan":  # NaN-heavy, with infinities
        x = rng.integers(-3, 4, size=shape).astype(np.float64)
        x[rng.random(shape) < 0.3] = np.nan
        x[rng.random(shape) < 0.05] = -np.inf
        return x
    if kind == "int":
        return rng.integers(-5, 6, size=shape).astype(np.int64)  # one of cases.INTEGER_DTYPES
    return rng.standard_normal(shape).astype(np.float32)


def separable_kernel(x, kernel, stride, padding, ceil_mode):
    """The general kernel's answer for the same call (the direct kernel bypassed)."""
    x5 = x[:, :, np.newaxis]
    spatial = x.shape[2:]
    out_spatial = reference.output_shape(spatial, kernel, stride, padding, (1, 1), ceil_mode)
    out = np.empty(x.shape[:2] + (1,) + out_spatial, x.dtype)
    indices = np.empty(out.shape, np.int64)
    columns = min(x.shape[-1], cpu_max_pool.TILE_COLUMNS)
    best = np.empty((3, columns), x.dtype)
    keys = np.empty((3, columns), np.int64)
    _separable(
        x5, (1, *kernel), (1, *stride), (0, *padding), (1, 1, 1), out, indices, True, best, keys
    )
    return out[:, :, 0], indices[:, :, 0]


def direct_kernel(x, kernel, stride, padding, ceil_mode):
    """The direct kernel's answer, called directly (the public call may prefer the separable kernel)."""
    x5 = x[:, :, np.newaxis]
    out_spatial = reference.output_shape(x.shape[2:], kernel, stride, padding, (1, 1), ceil_mode)
    out = np.empty(x.shape[:2] + (1,) + out_spatial, x.dtype)
    indices = np.empty(out.shape, np.int64)
    best = np.empty((3, 2 * cpu_max_pool.RUN_CAPACITY), x.dtype)
    keys = np.empty((3, 2 * cpu_max_pool.RUN_CAPACITY), np.int32)
    _direct(x5, (1, *kernel), (1, *stride), (0, *padding), out, indices, True, best, keys)
    return out[:, :, 0], indices[:, :, 0]


def assert_same(actual, expected):
    values, indices = actual
    expected_values, expected_indices = expected
    assert values.dtype == expected_values.dtype
    np.testing.assert_array_equal(values, expected_values)  # NaN positions must match too
    np.testing.assert_array_equal(indices, expected_indices)


@pytest.mark.parametrize("kind", ["normal", "ties", "nan", "int"])
@pytest.mark.parametrize("seed", range(12))
def test_direct_kernel_matches_separable_kernel_and_reference(kind, seed):
    rng = np.random.default_rng(seed)
    kernel, stride, padding, ceil_mode = random_config(rng)
    # widths from shorter than the window to rows of several vector runs, odd and even
    height = int(rng.integers(max(1, kernel[0] - padding[0]), 12))
    width = int(rng.choice([kernel[1], kernel[1] + 1, 9, 16, 17, 29, 40, 67]))
    width = max(width, kernel[1] - padding[1])
    x = random_input(rng, (2, 3, height, width), kind)
    if not reference.is_valid((height, width), kernel, stride, padding, (1, 1), ceil_mode):
        pytest.skip("not a valid pooling")
    assert cpu_max_pool._takes_direct_kernel(x[:, :, np.newaxis], (1, *kernel), (1, *stride), (0, *padding), (1, 1, 1))
    result = nb.max_pool2d(x, kernel, stride, padding, ceil_mode=ceil_mode, return_indices=True)
    assert_same(result, reference.max_pool(x, kernel, stride, padding, (1, 1), ceil_mode))
    assert_same(result, separable_kernel(x, kernel, stride, padding, ceil_mode))
    assert_same(direct_kernel(x, kernel, stride, padding, ceil_mode), result)
    values_only = nb.max_pool2d(x, kernel, stride, padding, ceil_mode=ceil_mode)
    np.testing.assert_array_equal(values_only, result[0])


@pytest.mark.parametrize("kernel, stride", [((2, 2), (2, 2)), ((3, 3), (2, 2)), ((1, 3), (1, 1))])
def test_direct_kernel_on_views_3d_and_unbatched(kernel, stride):
    rng = np.random.default_rng(7)
    wide = random_input(rng, (2, 3, 13, 2 * 37), "nan").astype(np.float32)
    x = wide[:, :, :, ::2]  # a non-contiguous view
    expected = reference.max_pool(np.ascontiguousarray(x), kernel, stride, (1, 1) if kernel[0] > 1 else (0, 1), (1, 1), True)
    got = nb.max_pool2d(x, kernel, stride, (1, 1) if kernel[0] > 1 else (0, 1), ceil_mode=True, return_indices=True)
    assert_same(got, expected)
    unbatched = nb.max_pool2d(x[0], kernel, stride, (1, 1) if kernel[0] > 1 else (0, 1), ceil_mode=True, return_indices=True)
    assert_same(unbatched, (expected[0][0], expected[1][0]))
    # 3-D pooling with a window of depth 1: indices count the planes before
    volume = random_input(rng, (1, 2, 3, 9, 21), "ties")
    got = nb.max_pool3d(volume, (1, *kernel), (2, *stride), return_indices=True)
    assert_same(got, reference.max_pool(volume, (1, *kernel), (2, *stride), (0, 0, 0), (1, 1, 1), False))


def test_last_nan_and_first_maximum_in_a_run():
    x = np.zeros((1, 1, 2, 40), np.float32)
    x[0, 0, 0, 4], x[0, 0, 1, 5] = np.nan, np.nan  # window 2 of k2s2: the later NaN (row 1) wins
    x[0, 0, 1, 10], x[0, 0, 0, 11] = 5, 5  # window 5: the first maximum in window order (row 0) wins
    values, indices = nb.max_pool2d(x, 2, 2, return_indices=True)
    assert np.isnan(values[0, 0, 0, 2]) and indices[0, 0, 0, 2] == 40 + 5
    assert values[0, 0, 0, 5] == 5 and indices[0, 0, 0, 5] == 11


def test_zero_size_batch_and_small_rows():
    empty = np.zeros((0, 3, 6, 6), np.float32)
    values, indices = nb.max_pool2d(empty, 2, 2, return_indices=True)
    assert values.shape == (0, 3, 3, 3) and indices.shape == (0, 3, 3, 3)
    x = np.arange(12, dtype=np.float32).reshape(1, 1, 3, 4)[..., ::-1]  # descending rows, reversed view
    got = nb.max_pool2d(x, 3, 1, padding=1, return_indices=True)
    assert_same(got, reference.max_pool(np.ascontiguousarray(x), (3, 3), (1, 1), (1, 1), (1, 1), False))


@pytest.mark.parametrize("kernel, stride, padding", [((1, 3), (1, 1), (0, 1)), ((2, 2), (2, 2), (0, 0))])
def test_rows_of_several_full_runs_and_an_overlapping_last_run(kernel, stride, padding):
    """Rows of more than RUN_CAPACITY interior windows, not a multiple of LANES: full runs, a shorter
    last full run, then the run that overlaps it."""
    outputs = 2 * cpu_max_pool.RUN_CAPACITY + 3 * cpu_max_pool.LANES + 5
    width = (outputs - 1) * stride[1] + kernel[1] - 2 * padding[1]
    x = random_input(np.random.default_rng(11), (1, 1, 2, width), "ties")  # small enough for the serial twin
    result = nb.max_pool2d(x, kernel, stride, padding, return_indices=True)
    assert result[0].shape[-1] == outputs
    assert_same(result, reference.max_pool(x, kernel, stride, padding, (1, 1), False))
    assert_same(direct_kernel(x, kernel, stride, padding, False), result)
