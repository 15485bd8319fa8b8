"""Property tests (hypothesis): invariants that hold for any input and any window."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import numba_pool as nb
from numba_pool import reference


@st.composite
def pooling_problems(draw):
    """A random 2-D input and valid window parameters (no dilation, so avg and max share them)."""
    height, width = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    ceil_mode = draw(st.booleans())
    if not reference.is_valid((height, width), kernel, stride, padding, (1, 1), ceil_mode):
        kernel, stride, padding, ceil_mode = (1, 1), (1, 1), (0, 0), False
    values = draw(st.lists(st.floats(-1e6, 1e6, width=32), min_size=2 * height * width, max_size=2 * height * width))
    x = np.array(values, np.float32).reshape(1, 2, height, width)
    return x, dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode)


SETTINGS = settings(max_examples=60, deadline=None)


@SETTINGS
@given(pooling_problems(), st.floats(-1e3, 1e3, width=32))
def test_a_constant_pools_to_itself(problem, value):
    x, window = problem
    constant = np.full_like(x, value)
    np.testing.assert_array_equal(nb.max_pool2d(constant, **window), value)
    np.testing.assert_allclose(nb.avg_pool2d(constant, **window, count_include_pad=False), value, rtol=1e-6)


@SETTINGS
@given(pooling_problems())
def test_max_is_at_least_the_mean_and_at_most_the_global_max(problem):
    x, window = problem
    maximum = nb.max_pool2d(x, **window)
    mean = nb.avg_pool2d(x.astype(np.float64), **window, count_include_pad=False)
    assert np.all(maximum >= mean - 1e-6 * np.abs(mean))
    assert np.all(maximum <= x.max())


@SETTINGS
@given(pooling_problems())
def test_indices_point_at_the_values_returned(problem):
    x, window = problem
    y, indices = nb.max_pool2d(x, **window, return_indices=True)
    planes = x.reshape(x.shape[0] * x.shape[1], -1)
    picked = np.take_along_axis(planes, indices.reshape(planes.shape[0], -1), axis=1)
    np.testing.assert_array_equal(picked.reshape(y.shape), y)


@SETTINGS
@given(pooling_problems())
def test_max_gradient_sums_to_the_output_gradient(problem):
    x, window = problem
    y, indices = nb.max_pool2d(x.astype(np.float64), **window, return_indices=True)
    grad = np.random.default_rng(0).standard_normal(y.shape)
    grad_input = nb.max_pool2d_backward(grad, indices, x.shape)
    np.testing.assert_allclose(grad_input.sum(axis=(2, 3)), grad.sum(axis=(2, 3)), rtol=1e-9, atol=1e-9)
