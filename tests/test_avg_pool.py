"""Average pooling forward and backward against the NumPy reference, plus the adjoint identity."""

import numpy as np
import pytest

import numba_pool
from numba_pool import reference
from cases import backend_case, random_case, random_values, user_values, window_options
from helpers import assert_matches, assert_same_results, op


def window_arguments(case):
    return (case.kernel, case.stride, case.padding, case.ceil_mode, case.count_include_pad, case.divisor_override)


def avg_pool_call(case, x, **extra):
    return op("avg_pool", case.dims)(x, *window_arguments(case), channels_last=case.channels_last, **extra)


def avg_pool_backward_call(case, grad_output):
    backward = op("avg_pool", case.dims, "backward")
    return backward(grad_output, case.user_shape(case.spatial), *window_arguments(case), channels_last=case.channels_last)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", range(40))
def test_forward_and_backward_match_reference(dims, seed):
    rng = np.random.default_rng([10 + dims, seed])
    case = random_case(rng, dims, dilation=False)
    x = random_values(rng, (case.batch, case.channels) + case.spatial, case.dtype, special=False)
    expected = reference.avg_pool(x, *window_arguments(case))

    y = avg_pool_call(case, case.to_user(x))
    assert y.dtype == x.dtype
    assert_matches(case.from_user(y), expected)

    grad_output = rng.standard_normal(expected.shape).astype(case.dtype)
    grad_input = avg_pool_backward_call(case, case.to_user(grad_output))
    assert grad_input.dtype == grad_output.dtype
    expected_grad = reference.avg_pool_backward(grad_output, case.spatial, *window_arguments(case))
    assert_matches(case.from_user(grad_input), expected_grad)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", range(15))
def test_backward_is_the_adjoint_of_forward(dims, seed):
    """Average pooling is linear: <avg(x), g> == <x, avg_backward(g)>."""
    rng = np.random.default_rng([20 + dims, seed])
    case = random_case(rng, dims, dilation=False, dtypes=(np.float64,))
    x = rng.standard_normal(case.user_shape(case.spatial))
    y = avg_pool_call(case, x)
    g = rng.standard_normal(y.shape)
    grad_input = avg_pool_backward_call(case, g)
    assert np.vdot(y, g) == pytest.approx(np.vdot(x, grad_input), rel=1e-12, abs=1e-12)


def test_nan_and_inf_propagate():
    x = np.array([[[1.0, np.nan, 2.0, 3.0, np.inf, 1.0]]])
    np.testing.assert_array_equal(numba_pool.avg_pool1d(x, 2), [[[np.nan, 2.5, np.inf]]])


def test_count_include_pad_and_divisor_override():
    x = np.ones((1, 1, 3))
    np.testing.assert_allclose(numba_pool.avg_pool1d(x, 3, 1, 1), [[[2 / 3, 1.0, 2 / 3]]])
    np.testing.assert_allclose(numba_pool.avg_pool1d(x, 3, 1, 1, count_include_pad=False), [[[1.0, 1.0, 1.0]]])
    np.testing.assert_allclose(numba_pool.avg_pool1d(x, 3, 1, 1, divisor_override=4), [[[0.5, 0.75, 0.5]]])


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_zero_size_batch(dims):
    x = np.zeros((0, 2) + (5,) * dims)
    y = op("avg_pool", dims)(x, 2)
    assert y.shape == (0, 2) + (2,) * dims
    grad = op("avg_pool", dims, "backward")(y, x.shape, 2)
    assert grad.shape == x.shape


def test_out_is_filled_and_returned():
    x = np.random.default_rng(3).standard_normal((2, 6, 6, 3)).astype(np.float32)
    out = np.empty((2, 3, 3, 3), np.float32)
    assert numba_pool.avg_pool2d(x, 2, channels_last=True, out=out) is out
    np.testing.assert_array_equal(out, numba_pool.avg_pool2d(x, 2, channels_last=True))


@pytest.mark.parallel_kernels  # thread counts
def test_backward_is_deterministic_across_thread_counts():
    import numba

    rng = np.random.default_rng(5)
    grad = rng.standard_normal((2, 3, 9, 9, 9)).astype(np.float32)
    results = []
    for threads in (1, numba.config.NUMBA_NUM_THREADS):
        numba.set_num_threads(threads)
        results.append(numba_pool.avg_pool3d_backward(grad, (2, 3, 18, 18, 18), 3, 2, 1))
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    assert results[0].tobytes() == results[1].tobytes()


# --------------------------------------------------------------------------- other backends against the CPU


@pytest.mark.backends("cuda")
@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", range(6))
def test_other_backends_match_the_cpu(backend, dims, seed):
    """Sums accumulate in the data's dtype on the GPU: equal to rounding."""
    rng, case, view = backend_case(seed + 100, dims, dilation=False)
    x = user_values(rng, case, special=False)
    options = dict(
        window_options(case),
        count_include_pad=case.count_include_pad,
        divisor_override=case.divisor_override,
        channels_last=case.channels_last,
    )
    forward = op("avg_pool", dims)
    y = forward(x, **options)
    assert_same_results(backend.get(forward(backend.put(x, view), **options)), y, exact=False)

    grad = random_values(rng, y.shape, case.dtype, special=False)
    backward = op("avg_pool", dims, "backward")
    got = backward(backend.put(grad, view), x.shape, **options)
    assert_same_results(backend.get(got), backward(grad, x.shape, **options), exact=False)
