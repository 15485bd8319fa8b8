"""The specialised average pooling paths (channels-last windows summed straight from the input, gradient
gathers) against the reference, and bit for bit against the other layout, on many random configurations."""

from __future__ import annotations

import numpy as np
import pytest

import numba_pool as nb
from numba_pool import reference
from helpers import assert_matches, op


def random_configuration(rng, dims):
    """Window parameters that favour the fast paths (k2/k3, s2) but also reach the general ones."""
    kernel = tuple(int(k) for k in rng.choice([1, 2, 3, 3, 4], size=dims, p=[0.1, 0.35, 0.25, 0.15, 0.15]))
    stride = tuple(int(s) for s in rng.choice([1, 2, 2, 3], size=dims))
    padding = tuple(int(rng.integers(0, k // 2 + 1)) for k in kernel)
    spatial = tuple(int(rng.integers(k, k + 12)) for k in kernel)
    divisor = int(rng.integers(1, 10)) if rng.random() < 0.2 else None
    return dict(
        spatial=spatial, kernel=kernel, stride=stride, padding=padding, ceil_mode=bool(rng.integers(2)),
        count_include_pad=bool(rng.integers(2)), divisor_override=divisor,
    )


def random_input(rng, batch, channels, spatial, dtype):
    """Values of mixed signs, with some planes scaled to huge or tiny magnitudes."""
    x = rng.standard_normal((batch, channels) + spatial)
    exponent_range = 30 if dtype == np.float64 else 15
    scale = 10.0 ** rng.integers(-exponent_range, exponent_range + 1, size=(batch, channels) + (1,) * len(spatial))
    return (x * scale).astype(dtype)


def memories(x):
    """(name, array in the user's layout, channels_last flag, back to (N, C, *spatial)) for several memories."""
    last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    wide = np.zeros(last.shape[:-1] + (2 * last.shape[-1],), x.dtype)
    wide[..., ::2] = last
    yield "channels-first", x, False, lambda a: a
    yield "channels-last", last, True, lambda a: np.moveaxis(a, -1, 1)
    yield "channels-last memory read as channels-first", np.moveaxis(last, -1, 1), False, lambda a: a
    yield "channels-last, strided channels", wide[..., ::2], True, lambda a: np.moveaxis(a, -1, 1)


def window_arguments(config):
    return (config["kernel"], config["stride"], config["padding"], config["ceil_mode"],
            config["count_include_pad"], config["divisor_override"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", range(12))
def test_forward_and_backward_agree_with_reference_and_across_memories(dims, seed, dtype):
    rng = np.random.default_rng([131, dims, seed])
    config = random_configuration(rng, dims)
    if not reference.is_valid(config["spatial"], config["kernel"], config["stride"], config["padding"], (1,) * dims,
                              config["ceil_mode"]):
        pytest.skip("window larger than the padded input")
    batch, channels = int(rng.integers(1, 3)), int(rng.choice([1, 3, 8, 13]))
    x = random_input(rng, batch, channels, config["spatial"], dtype)
    forward = op("avg_pool", dims)
    backward = op("avg_pool", dims, "backward")
    arguments = window_arguments(config)

    expected = reference.avg_pool(x, *arguments)
    grad_output = random_input(rng, batch, channels, expected.shape[2:], dtype)
    expected_grad = reference.avg_pool_backward(grad_output, config["spatial"], *arguments)
    first_forward = first_backward = None
    for name, array, last, back in memories(x):
        y = back(forward(array, *arguments, channels_last=last))
        assert_matches(y, expected, err_msg=name)
        grad = np.moveaxis(grad_output, 1, -1) if last else grad_output
        shape = array.shape
        g = back(backward(np.ascontiguousarray(grad) if seed % 2 else grad, shape, *arguments, channels_last=last))
        assert_matches(g, expected_grad, err_msg=name)
        if first_forward is None:
            first_forward, first_backward = y, g
        np.testing.assert_array_equal(y, first_forward, err_msg=name)  # same bits in every memory
        np.testing.assert_array_equal(g, first_backward, err_msg=name)


@pytest.mark.parametrize("kernel, stride, padding", [(2, 2, 0), (3, 2, 1), (3, 2, 0), (2, 1, 1), (3, 3, 1)])
@pytest.mark.parametrize("width", [5, 6, 7, 8])
def test_common_2d_windows_with_every_border(kernel, stride, padding, width):
    """k2/k3 windows (the channels-last fast path) next to every kind of border, both ceil modes."""
    rng = np.random.default_rng([kernel, stride, padding, width])
    x = rng.standard_normal((2, 5, width + 1, width))
    for ceil_mode in (False, True):
        for include_pad in (False, True):
            arguments = (kernel, stride, padding, ceil_mode, include_pad, None)
            pair = lambda value: (value, value)  # noqa: E731
            expected = reference.avg_pool(x, pair(kernel), pair(stride), pair(padding), ceil_mode, include_pad, None)
            results = [back(nb.avg_pool2d(a, *arguments, channels_last=last)) for _, a, last, back in memories(x)]
            for result in results:
                assert_matches(result, expected)
                np.testing.assert_array_equal(result, results[0])


@pytest.mark.parametrize("channels_last", [False, True])
def test_zero_size_batch_and_single_element_windows(channels_last):
    shape = (0, 4, 4, 3) if channels_last else (0, 3, 4, 4)
    assert nb.avg_pool2d(np.zeros(shape, np.float32), 2, channels_last=channels_last).shape[0] == 0
    x = np.arange(2 * 3 * 5 * 5, dtype=np.float64).reshape(2, 3, 5, 5)
    array = np.ascontiguousarray(np.moveaxis(x, 1, -1)) if channels_last else x
    y = nb.avg_pool2d(array, 1, channels_last=channels_last)
    np.testing.assert_array_equal(y, array)


def test_nan_and_inf_in_channels_last_fast_windows():
    x = np.ones((1, 4, 4, 8), np.float32)
    x[0, 1, 1, 2] = np.nan
    x[0, 2, 3, 5] = np.inf
    y = nb.avg_pool2d(x, 2, channels_last=True)
    assert np.isnan(y[0, 0, 0, 2]) and np.isinf(y[0, 1, 1, 5])
    assert np.count_nonzero(~np.isfinite(y)) == 2
