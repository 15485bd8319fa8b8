"""Max pooling forward and backward against the NumPy reference."""

from dataclasses import replace

import numpy as np
import pytest

import numba_pool
from numba_pool import reference
from cases import INTEGER_DTYPES, backend_case, nan_heavy_values, random_case, random_values, user_values, window_options
from helpers import assert_matches, assert_same_results, op


def max_pool_call(case, x, **extra):
    function = op("max_pool", case.dims)
    return function(
        x, case.kernel, case.stride, case.padding, case.dilation, case.ceil_mode,
        channels_last=case.channels_last, **extra,
    )


def reference_input(case, rng):
    return random_values(rng, (case.batch, case.channels) + case.spatial, case.dtype)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", range(40))
def test_forward_and_backward_match_reference(dims, seed):
    rng = np.random.default_rng([dims, seed])
    case = random_case(rng, dims)
    x = reference_input(case, rng)
    expected, expected_indices = reference.max_pool(x, case.kernel, case.stride, case.padding, case.dilation, case.ceil_mode)

    y, indices = max_pool_call(case, case.to_user(x), return_indices=True)
    assert y.dtype == x.dtype and indices.dtype == np.int64
    np.testing.assert_array_equal(case.from_user(y), expected)
    np.testing.assert_array_equal(case.from_user(indices), expected_indices)
    np.testing.assert_array_equal(max_pool_call(case, case.to_user(x)), y)  # without indices: same values

    grad_output = rng.standard_normal(expected.shape).astype(case.dtype)
    backward = op("max_pool", dims, "backward")
    grad_input = backward(case.to_user(grad_output), case.to_user(expected_indices), case.user_shape(case.spatial),
                          channels_last=case.channels_last)
    assert grad_input.dtype == grad_output.dtype
    expected_grad = reference.max_pool_backward(grad_output, expected_indices, case.spatial)
    assert_matches(case.from_user(grad_input), expected_grad)


@pytest.mark.parametrize("dtype", INTEGER_DTYPES)
def test_integer_dtypes_are_kept(dtype):
    rng = np.random.default_rng(np.dtype(dtype).itemsize)
    for _ in range(3):
        case = random_case(rng, 2, dtypes=(dtype,))
        if dtype != np.int8:  # only int8 meets the random strided views (fewer memory layouts to compile)
            case = replace(case, view="contiguous")
        x = reference_input(case, rng)
        expected, expected_indices = reference.max_pool(x, case.kernel, case.stride, case.padding, case.dilation, case.ceil_mode)
        y, indices = max_pool_call(case, case.to_user(x), return_indices=True)
        assert y.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(case.from_user(y), expected)
        np.testing.assert_array_equal(case.from_user(indices), expected_indices)


def test_ties_go_to_the_first_maximum_and_the_last_nan_wins():
    """PyTorch's rule: ``val > maxval || isnan(val)`` in window order."""
    x = np.array([[[1.0, 5.0, 5.0, 2.0, np.nan, 7.0, np.nan, 1.0, -np.inf, -np.inf]]])
    y, indices = numba_pool.max_pool1d(x, 2, return_indices=True)
    np.testing.assert_array_equal(y, [[[5.0, 5.0, np.nan, np.nan, -np.inf]]])
    np.testing.assert_array_equal(indices, [[[1, 2, 4, 6, 8]]])
    several = np.array([[[np.nan, np.nan, 1.0, np.nan]]])
    assert numba_pool.max_pool1d(several, 4, return_indices=True)[1][0, 0, 0] == 3
    sliding = np.array([[[np.nan, 5.0, np.nan, 7.0, np.nan, 3.0]]])
    np.testing.assert_array_equal(numba_pool.max_pool1d(sliding, 3, 1, return_indices=True)[1], [[[2, 2, 4, 4]]])


@pytest.mark.parametrize("channels_last", [False, True])
def test_the_last_nan_in_window_order_wins_in_2d(channels_last):
    """Window order is row-major: the NaN at (2, 1) comes after the ones at (0, 0) and (1, 0)."""
    plane = np.array([[np.nan, 1.0], [np.nan, 2.0], [3.0, np.nan]])
    x = np.stack([plane, plane[::-1].copy()])[None]  # two channels
    x = np.ascontiguousarray(np.moveaxis(x, 1, -1)) if channels_last else x
    y, indices = numba_pool.max_pool2d(x, (3, 2), return_indices=True, channels_last=channels_last)
    assert np.isnan(y).all()
    np.testing.assert_array_equal(indices.reshape(-1), [5, 4])


def torch_max_pool(x, dims, case):
    """torch's values and indices for a reference-layout array, from its channels-first kernels (their
    channels-last kernels point all -inf dilated windows at an element outside the window)."""
    torch = pytest.importorskip("torch")
    pool = getattr(torch.nn.functional, f"max_pool{dims}d")
    y, indices = pool(torch.from_numpy(x), case.kernel, case.stride, case.padding, case.dilation, case.ceil_mode, True)
    return y.numpy(), indices.numpy()


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", range(12))
def test_nan_heavy_inputs_match_torch(dims, seed):
    """Several NaNs and ties per window, every layout: values and indices equal PyTorch's."""
    rng = np.random.default_rng([70 + dims, seed])
    case = random_case(rng, dims)
    x = nan_heavy_values(rng, (case.batch, case.channels) + case.spatial, case.dtype)
    expected, expected_indices = torch_max_pool(x, dims, case)
    y, indices = max_pool_call(case, case.to_user(x), return_indices=True)
    np.testing.assert_array_equal(case.from_user(y), expected)
    np.testing.assert_array_equal(case.from_user(indices), expected_indices)
    np.testing.assert_array_equal(case.from_user(max_pool_call(case, case.to_user(x))), expected)
    reference_values, reference_indices = reference.max_pool(x, case.kernel, case.stride, case.padding, case.dilation, case.ceil_mode)
    np.testing.assert_array_equal(reference_values, expected)
    np.testing.assert_array_equal(reference_indices, expected_indices)


def test_padding_is_never_picked():
    x = np.full((1, 1, 3, 3), -np.inf)
    y, indices = numba_pool.max_pool2d(x, 3, 1, 1, return_indices=True)
    assert np.all(y == -np.inf)
    corner_firsts = [[0, 0, 1], [0, 0, 1], [3, 3, 4]]  # first in-input element of each window
    np.testing.assert_array_equal(indices[0, 0], corner_firsts)


def test_unbatched_equals_batched():
    x = np.random.default_rng(1).standard_normal((3, 6, 7))
    batched, batched_indices = numba_pool.max_pool2d(x[None], 3, 2, 1, return_indices=True)
    unbatched, unbatched_indices = numba_pool.max_pool2d(x, 3, 2, 1, return_indices=True)
    np.testing.assert_array_equal(unbatched, batched[0])
    np.testing.assert_array_equal(unbatched_indices, batched_indices[0])
    grad = numba_pool.max_pool2d_backward(np.ones_like(unbatched), unbatched_indices, x.shape)
    assert grad.shape == x.shape


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_zero_size_batch(dims):
    x = np.zeros((0, 2) + (5,) * dims, np.float32)
    y, indices = op("max_pool", dims)(x, 2, return_indices=True)
    assert y.shape == (0, 2) + (2,) * dims and indices.shape == y.shape
    grad = op("max_pool", dims, "backward")(y, indices, x.shape)
    assert grad.shape == x.shape and grad.dtype == np.float32


def test_channels_last_matches_channels_first():
    x = np.random.default_rng(2).standard_normal((2, 3, 8, 9)).astype(np.float32)
    y, indices = numba_pool.max_pool2d(x, 3, 2, 1, ceil_mode=True, return_indices=True)
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    y_last, indices_last = numba_pool.max_pool2d(nhwc, 3, 2, 1, ceil_mode=True, return_indices=True, channels_last=True)
    assert y_last.flags.c_contiguous and y_last.shape == (2, 5, 5, 3)
    np.testing.assert_array_equal(y_last.transpose(0, 3, 1, 2), y)
    np.testing.assert_array_equal(indices_last.transpose(0, 3, 1, 2), indices)


def test_out_is_filled_and_returned():
    # float32, a strided x and a dilated window: the separable kernel (the direct kernel compiles several
    # times longer for each new argument type); the strided out has test_refusals's argument types
    x = np.random.default_rng(3).standard_normal((2, 3, 8, 16)).astype(np.float32)[..., ::2]
    window = dict(kernel_size=2, stride=2, padding=0, dilation=2, ceil_mode=True)  # 4 x 4 outputs
    out = np.empty((2, 3, 4, 4), np.float32)
    result = numba_pool.max_pool2d(x, **window, out=out)
    assert result is out
    np.testing.assert_array_equal(out, numba_pool.max_pool2d(x, **window))
    strided_out = np.empty((2, 3, 4, 8), np.float32)[..., ::2]  # a non-contiguous out is written in place
    numba_pool.max_pool2d(x, **window, out=strided_out)
    np.testing.assert_array_equal(strided_out, out)


@pytest.mark.parallel_kernels  # thread counts
def test_backward_is_deterministic_across_thread_counts(monkeypatch):
    import numba

    from numba_pool.backends.cpu import _threading

    monkeypatch.setattr(_threading, "SERIAL_BELOW", 0)  # these arrays are small: the parallel kernels all the same
    rng = np.random.default_rng(4)
    x = np.round(rng.standard_normal((2, 4, 20, 20))).astype(np.float32)  # many ties, overlapping windows share argmaxes
    y, indices = numba_pool.max_pool2d(x, 3, 1, 1, return_indices=True)
    grad = rng.standard_normal(y.shape).astype(np.float32)
    results = []
    for threads in (1, numba.config.NUMBA_NUM_THREADS):
        numba.set_num_threads(threads)
        results.append(numba_pool.max_pool2d_backward(grad, indices, x.shape))
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    assert results[0].tobytes() == results[1].tobytes()


def test_channels_contiguous_memory_keeps_its_format():
    """An NCHW-shaped view of NHWC memory (e.g. a channels_last torch tensor) is pooled without a copy
    and gives an NCHW-shaped result in NHWC memory, as PyTorch does."""
    nhwc = np.random.default_rng(5).standard_normal((2, 8, 8, 16)).astype(np.float32)
    nchw_view = nhwc.transpose(0, 3, 1, 2)
    y, indices = numba_pool.max_pool2d(nchw_view, 2, return_indices=True)
    expected, expected_indices = numba_pool.max_pool2d(np.ascontiguousarray(nchw_view), 2, return_indices=True)
    np.testing.assert_array_equal(y, expected)
    np.testing.assert_array_equal(indices, expected_indices)
    assert y.transpose(0, 2, 3, 1).flags.c_contiguous and indices.transpose(0, 2, 3, 1).flags.c_contiguous
    grad = numba_pool.max_pool2d_backward(np.ones_like(y), indices, nchw_view.shape)
    assert grad.transpose(0, 2, 3, 1).flags.c_contiguous


# --------------------------------------------------------------------------- other backends against the CPU


@pytest.mark.backends("cuda")
@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", range(6))
def test_other_backends_match_the_cpu_bitwise(backend, dims, seed):
    rng, case, view = backend_case(seed, dims, dtypes=(np.float32, np.float64, np.int64, np.uint8))
    x = user_values(rng, case)
    forward = op("max_pool", dims)
    options = dict(window_options(case), dilation=case.dilation, return_indices=True, channels_last=case.channels_last)
    y, indices = forward(x, **options)
    assert_same_results(backend.get(forward(backend.put(x, view), **options)), (y, indices))

    grad = random_values(rng, y.shape, np.float32, special=False)
    backward = op("max_pool", dims, "backward")
    expected = backward(grad, indices, x.shape, channels_last=case.channels_last)
    got = backward(backend.put(grad), backend.put(indices, view), x.shape, channels_last=case.channels_last)
    assert_same_results(backend.get(got), expected)
