"""Stochastic pooling on windows holding +inf, huge and subnormal values (the semantics in the README).

Weights are compared relative to the window's largest weight, so huge values
cannot overflow; +inf weights share the whole probability. The CPU kernels in
both memory layouts and the CUDA kernels (simulator in CI) must agree exactly.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import numba_pool as nb
from numba_pool import reference

INF = np.inf
SEEDS = range(400)


def one_window(values, dtype=np.float64) -> np.ndarray:
    return np.asarray(values, dtype).reshape(1, 1, -1)


def picks(values, dtype=np.float64, seeds=SEEDS) -> np.ndarray:
    """The index picked in the single window ``values`` under each seed."""
    x = one_window(values, dtype)
    return np.array([int(nb.stochastic_pool1d(x, x.shape[-1], seed=s, return_indices=True)[1][0, 0, 0]) for s in seeds])


def inference(values, dtype=np.float64) -> float:
    x = one_window(values, dtype)
    return float(nb.stochastic_pool1d(x, x.shape[-1], training=False)[0, 0, 0])


def inference_gradient(values, dtype=np.float64) -> np.ndarray:
    x = one_window(values, dtype)
    return nb.stochastic_pool1d_inference_backward(np.ones((1, 1, 1), dtype), x, x.shape[-1])[0, 0]


def test_an_infinite_element_is_always_picked_and_is_the_expected_value():
    assert set(picks([1, INF, 2, 3])) == {1}
    assert inference([1, INF, 2, 3]) == INF
    np.testing.assert_array_equal(inference_gradient([1, INF, 2, 3]), [0, 1, 0, 0])


def test_infinite_elements_share_the_probability_equally():
    chosen = picks([INF, 1, INF, 2], np.float32)
    assert set(chosen) == {0, 2}
    assert 0.4 < np.mean(chosen == 0) < 0.6  # 400 draws: a fair coin lands here with p > 0.99995
    np.testing.assert_array_equal(inference_gradient([INF, 1, INF, 2]), [0.5, 0, 0.5, 0])


@pytest.mark.parametrize("huge", [1e200, 1.7e308])
def test_huge_values_do_not_overflow(huge):
    assert inference([huge, huge, 0, 0]) == pytest.approx(huge, rel=1e-15)
    np.testing.assert_allclose(inference_gradient([huge, huge, 0, 0]), [0.5, 0.5, 0, 0], rtol=1e-15)
    chosen = picks([huge, huge, 1, 0])
    assert set(chosen) == {0, 1}  # the 1 has probability 1/3.4e308: never


def test_subnormal_weights_keep_their_proportions():
    tiny = 5e-324  # the smallest subnormal float64
    chosen = picks([tiny, 3 * tiny, 0, 0])
    assert set(chosen) == {0, 1}
    assert 0.15 < np.mean(chosen == 0) < 0.35  # probability 1/4
    assert inference([tiny, 3 * tiny, 0, 0]) == pytest.approx(2.5 * tiny, abs=tiny)


def test_ordinary_windows_are_unchanged_by_the_scaling():
    """The exact power-of-two scaling leaves ordinary windows as the unscaled formula gives them."""
    window = [1.0, 2.0, 3.0, 4.0]
    assert inference(window) == 3.0
    expected_gradient = [(2 * a * 10 - 30) / 100 for a in window]
    np.testing.assert_array_equal(inference_gradient(window), expected_gradient)


def extreme_array(rng, shape, dtype) -> np.ndarray:
    """Random values with +inf, -inf, huge, subnormal, zero and negative entries scattered in."""
    big = np.finfo(dtype).max / 2
    tiny = np.finfo(dtype).smallest_subnormal
    choices = np.array([INF, -INF, big, big, tiny, 2 * tiny, 0.0, -1.0, 1.0, 0.5], dtype)
    x = rng.random(shape).astype(dtype)
    mask = rng.random(shape) < 0.5
    x[mask] = rng.choice(choices, size=int(mask.sum()))
    return x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_windows_match_the_reference_and_agree_across_layouts(dtype):
    rng = np.random.default_rng(11)
    x = extreme_array(rng, (2, 5, 7, 6), dtype)
    arguments = ((3, 2), (2, 2), (1, 1), False)
    expected = reference.stochastic_pool_inference(x, *arguments)
    with np.errstate(invalid="ignore", over="ignore"):
        got = nb.stochastic_pool2d(x, *arguments, training=False)
    np.testing.assert_allclose(got, expected, rtol=1e-6 if dtype == np.float32 else 1e-13)

    grad = rng.standard_normal(got.shape).astype(dtype)
    np.testing.assert_allclose(
        nb.stochastic_pool2d_inference_backward(grad, x, *arguments),
        reference.stochastic_pool_inference_backward(x, grad, *arguments),
        rtol=1e-5 if dtype == np.float32 else 1e-12,
        atol=1e-6 if dtype == np.float32 else 1e-12,
    )

    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))  # channels-last memory runs the other kernel
    for training in (True, False):
        first = nb.stochastic_pool2d(x, *arguments, training=training, seed=5, return_indices=training)
        second = nb.stochastic_pool2d(nhwc, *arguments, training=training, seed=5, return_indices=training, channels_last=True)
        first, second = (first, second) if training else ((first,), (second,))
        for a, b in zip(first, second):
            np.testing.assert_array_equal(a, np.moveaxis(b, -1, 1))


@pytest.mark.skipif(importlib.util.find_spec("numba_cuda") is None, reason="needs numba-cuda")
def test_cuda_gives_the_cpu_results_on_extreme_windows():
    from numba import cuda

    rng = np.random.default_rng(12)
    x = extreme_array(rng, (1, 2, 5, 4), np.float64)
    arguments = ((2, 2), (2, 1), (1, 1), False)
    device_x = cuda.to_device(x)
    for training in (True, False):
        cpu = nb.stochastic_pool2d(x, *arguments, training=training, seed=3, return_indices=training)
        gpu = nb.stochastic_pool2d(device_x, *arguments, training=training, seed=3, return_indices=training)
        cpu, gpu = (cpu, gpu) if training else ((cpu,), (gpu,))
        for a, b in zip(cpu, gpu):
            np.testing.assert_array_equal(b.copy_to_host(), a)
    grad = rng.standard_normal(cpu[0].shape)
    expected = nb.stochastic_pool2d_inference_backward(grad, x, *arguments)
    got = nb.stochastic_pool2d_inference_backward(cuda.to_device(grad), device_x, *arguments).copy_to_host()
    np.testing.assert_allclose(got, expected, rtol=1e-12)
