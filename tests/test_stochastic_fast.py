"""The lane-vectorised stochastic pooling forward kernels against the scalar rule they implement.

Both CPU forward kernels compute ``window_output`` (the per-window rule the CUDA kernels run too)
for many windows at once. Here they must give its results bit for bit (values and picked indices,
training and inference, both memory layouts), and agree with the NumPy reference.
"""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from numba_pool import reference
from numba_pool._rng import mix64, output_counter, uniform, uniform_after_mix
from numba_pool.backends.cpu import stochastic_pool
from numba_pool.backends.rules import window_extent
from cases import random_case, strided_view
from helpers import op


# --------------------------------------------------------------------------- the scalar oracle


@njit(cache=True)
def scalar_forward(x, kernel, stride, padding, seed, training, out, indices):
    """``window_output`` for every output of a canonical (N, C, D, H, W) input, one window at a time."""
    batch, channels, depth, height, width = x.shape
    logical = out.shape
    origin = (0, 0, 0, 0, 0)
    for n in range(batch):
        for c in range(channels):
            for od in range(out.shape[2]):
                d_first, d_stop, _ = window_extent(od * stride[0] - padding[0], kernel[0], depth, padding[0])
                for oh in range(out.shape[3]):
                    h_first, h_stop, _ = window_extent(oh * stride[1] - padding[1], kernel[1], height, padding[1])
                    for ow in range(out.shape[4]):
                        w_first, w_stop, _ = window_extent(ow * stride[2] - padding[2], kernel[2], width, padding[2])
                        box = (d_first, d_stop, h_first, h_stop, w_first, w_stop)
                        counter = output_counter(origin, logical, n, c, od, oh, ow)
                        value, picked = stochastic_pool.window_output(x[n, c], box, training, seed, counter)
                        out[n, c, od, oh, ow] = value
                        indices[n, c, od, oh, ow] = picked


def scalar_pool(x, dims, kernel, stride, padding, ceil_mode, seed, training):
    """(values, indices) of ``window_output`` over a reference-layout (N, C, *spatial) array."""
    missing = 3 - dims
    canonical = x.reshape(x.shape[:2] + (1,) * missing + x.shape[2:])
    spatial = reference.output_shape(x.shape[2:], kernel, stride, padding, (1,) * dims, ceil_mode)
    out = np.empty(canonical.shape[:2] + (1,) * missing + spatial, x.dtype)
    indices = np.empty(out.shape, np.int64)
    pad = lambda values, fill: (fill,) * missing + tuple(values)  # noqa: E731
    scalar_forward(canonical, pad(kernel, 1), pad(stride, 1), pad(padding, 0), np.uint64(seed), training, out, indices)
    return out.reshape(x.shape[:2] + spatial), indices.reshape(x.shape[:2] + spatial)


# --------------------------------------------------------------------------- inputs


def extreme_values(rng, shape, dtype) -> np.ndarray:
    """Ties, negatives, zeros, NaN, +-inf, huge and subnormal values, and all-negative stretches."""
    info = np.finfo(dtype)
    specials = np.array([np.nan, np.inf, -np.inf, info.max, info.max / 3, 1e300 if dtype == np.float64 else 1e38,
                         info.smallest_subnormal, 3 * info.smallest_subnormal, info.tiny, 0.0, -0.0, -1.0, 1.0, 2.0])
    values = np.round(rng.standard_normal(shape), int(rng.integers(0, 3)))
    mask = rng.random(shape) < rng.choice([0.0, 0.05, 0.3])
    values[mask] = rng.choice(specials, size=int(mask.sum()))
    if rng.random() < 0.3:
        values = -np.abs(values)  # windows without any weight: picks by count, inference gives the mean
    with np.errstate(over="ignore"):
        return values.astype(dtype)


def random_wide_case(rng, dims):
    """A configuration with rows and channel counts wide enough for several lane tiles."""
    while True:
        kernel = tuple(int(k) for k in rng.integers(1, 5, dims))
        spatial = tuple(int(n) for n in rng.integers(1, 8, dims - 1)) + (int(rng.integers(1, 300)),)
        stride = tuple(int(s) for s in rng.integers(1, 4, dims))
        padding = tuple(int(rng.integers(0, k // 2 + 1)) for k in kernel)
        ceil_mode = bool(rng.random() < 0.5)
        if reference.is_valid(spatial, kernel, stride, padding, (1,) * dims, ceil_mode):
            channels = int(rng.choice([1, 3, 129, 300]))
            return channels, spatial, kernel, stride, padding, ceil_mode


def pool_in_layout(x, dims, arguments, seed, training, channels_last, view="contiguous"):
    """The public function on ``x`` (reference layout) stored channels-first or channels-last, back in reference layout."""
    user = np.moveaxis(x, 1, -1) if channels_last else x
    user = strided_view(np.ascontiguousarray(user), view)
    pool = op("stochastic_pool", dims)
    result = pool(user, *arguments, training=training, seed=seed, return_indices=training, channels_last=channels_last)
    values, indices = result if training else (result, None)
    back = (lambda a: np.moveaxis(a, -1, 1)) if channels_last else (lambda a: a)
    return back(values), None if indices is None else back(indices)


def assert_same_as_scalar(x, dims, arguments, seed, views=("contiguous",)):
    for training in (True, False):
        expected_values, expected_indices = scalar_pool(x, dims, *arguments, seed, training)
        for channels_last in (False, True):
            for view in views:
                values, indices = pool_in_layout(x, dims, arguments, seed, training, channels_last, view)
                np.testing.assert_array_equal(values, expected_values, err_msg=f"{training=} {channels_last=} {view=}")
                assert values.dtype == x.dtype
                if training:
                    np.testing.assert_array_equal(indices, expected_indices, err_msg=f"{channels_last=} {view=}")


# --------------------------------------------------------------------------- the pieces


@njit(cache=True)
def lane_scales(largest):
    scale = np.empty_like(largest)
    stochastic_pool.lane_weight_scales(largest, scale, largest.size)
    return scale


@njit(cache=True)
def scalar_scales(largest):
    return np.array([stochastic_pool.weight_scale(value) for value in largest])


def test_lane_scales_equal_weight_scale_everywhere():
    rng = np.random.default_rng(0)
    every_exponent = np.ldexp(1.0, np.arange(-1074, 1024))  # every power of two, subnormals included
    random_bits = rng.integers(0, 2**63, 100_000, dtype=np.uint64).view(np.float64)  # every exponent field, NaN and inf
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
                        1e300, 1e-310, 0.5, 1.0, 0.9999999999999999, -1.0])
    for largest in (every_exponent, every_exponent * 1.5, every_exponent * 0.75, random_bits, special):
        largest = np.ascontiguousarray(largest)
        expected, got = scalar_scales(largest), lane_scales(largest)
        np.testing.assert_array_equal(got.view(np.uint64), expected.view(np.uint64))


@njit(cache=True)
def draws_after_mix(seed, counters):
    mixed = mix64(seed)
    return np.array([uniform_after_mix(mixed, counter) for counter in counters])


@njit(cache=True)
def uniform_draws(seed, counters):
    return np.array([uniform(seed, counter) for counter in counters])


def test_draws_after_a_hoisted_seed_mix_equal_uniform():
    rng = np.random.default_rng(1)
    counters = np.concatenate([np.arange(1000), rng.integers(0, 2**62, 1000)])
    for seed in [0, 1, 2**63, 2**64 - 1, *rng.integers(0, 2**63, 5)]:
        np.testing.assert_array_equal(draws_after_mix(np.uint64(seed), counters), uniform_draws(np.uint64(seed), counters))


# --------------------------------------------------------------------------- whole kernels


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", range(10))
def test_kernels_equal_the_scalar_rule_on_random_cases(dims, seed):
    rng = np.random.default_rng([90 + dims, seed])
    case = random_case(rng, dims, dilation=False)
    x = extreme_values(rng, (case.batch, case.channels) + case.spatial, case.dtype)
    arguments = (case.kernel, case.stride, case.padding, case.ceil_mode)
    assert_same_as_scalar(x, dims, arguments, seed, views=("contiguous", case.view))


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", range(4))
def test_kernels_equal_the_scalar_rule_on_wide_rows_and_many_channels(dims, seed):
    rng = np.random.default_rng([95 + dims, seed])
    channels, spatial, kernel, stride, padding, ceil_mode = random_wide_case(rng, dims)
    dtype = (np.float32, np.float64)[seed % 2]
    x = extreme_values(rng, (2, channels) + spatial, dtype)
    assert_same_as_scalar(x, dims, (kernel, stride, padding, ceil_mode), seed)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_windows_take_fewer_lanes_and_stay_exact(dtype):
    rng = np.random.default_rng(7)
    x = extreme_values(rng, (1, 3, 70, 90), dtype)  # 30 x 32 = 960 taps: tiles of two lanes
    assert_same_as_scalar(x, 2, ((30, 32), (3, 5), (10, 16), True), 3)


def test_windows_too_large_for_lanes_run_one_by_one():
    """More in-input taps than LARGEST_LANE_WINDOW: no lane buffers (they would be huge), the same results."""
    from numba_pool.backends.cpu.stochastic_pool import LARGEST_LANE_WINDOW

    rng = np.random.default_rng(8)
    x = extreme_values(rng, (1, 2, 70, 80), np.float64)
    assert 65 * 70 > LARGEST_LANE_WINDOW
    assert_same_as_scalar(x, 2, ((65, 70), (4, 6), (30, 30), False), 5)


def test_zero_size_batches_and_single_elements():
    for shape in [(0, 3, 6, 6), (1, 1, 1, 1)]:
        x = np.ones(shape, np.float32)
        assert_same_as_scalar(x, 2, ((1, 1), (1, 1), (0, 0), False), 0)
    assert_same_as_scalar(np.full((1, 2, 5, 5), 1e-45, np.float32), 2, ((2, 2), (2, 2), (1, 1), True), 1)


@pytest.mark.parametrize("seed", range(4))
def test_kernels_match_the_reference(seed):
    rng = np.random.default_rng([99, seed])
    dtype = (np.float32, np.float64)[seed % 2]
    x = extreme_values(rng, (2, 130, 9, 33), dtype)
    arguments = ((3, 2), (2, 2), (1, 1), bool(seed % 2))
    expected = reference.stochastic_pool_inference(x, *arguments)
    # subnormal results may differ from the reference's differently rounded formula in the last subnormal steps
    atol = 16 * np.finfo(dtype).smallest_subnormal
    tolerance = dict(rtol=1e-6, atol=atol) if dtype == np.float32 else dict(rtol=1e-13, atol=atol)
    for channels_last in (False, True):
        with np.errstate(invalid="ignore", over="ignore"):
            values, _ = pool_in_layout(x, 2, arguments, seed, False, channels_last)
        np.testing.assert_allclose(values, expected, **tolerance)
        values, indices = pool_in_layout(x, 2, arguments, seed, True, channels_last)
        planes = x.reshape(x.shape[:2] + (-1,))
        for position, points in reference.in_input_windows(x.shape[2:], *arguments):
            allowed = np.array([np.ravel_multi_index(p, x.shape[2:]) for p in points])
            window = planes[..., allowed]
            picked = indices[(...,) + position]
            nan = np.isnan(window).any(axis=-1)
            first_nan = allowed[np.argmax(np.isnan(window), axis=-1)]
            np.testing.assert_array_equal(picked[nan], first_nan[nan])
            has_inf = np.isposinf(window).any(axis=-1) & ~nan
            positive = (window > 0).any(axis=-1) & ~nan
            for n, c in zip(*np.nonzero(~nan)):
                candidates = window[n, c] == np.inf if has_inf[n, c] else (window[n, c] > 0 if positive[n, c] else np.ones(len(allowed), bool))
                assert picked[n, c] in allowed[candidates]
            chosen = np.take_along_axis(planes, picked.reshape(picked.shape[:2] + (1,)), -1)[..., 0]
            np.testing.assert_array_equal(values[(...,) + position][~nan], chosen[~nan])
