"""Global average and max pooling against the reference, in every layout."""

import numpy as np
import pytest

import numba_pool as nb
from numba_pool import reference
from cases import backend_case, nan_heavy_values, random_case, random_values, user_values
from helpers import assert_matches, assert_same_results, op


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling_matches_reference(dims, seed, keepdims):
    rng = np.random.default_rng([80 + dims, seed])
    case = random_case(rng, dims)
    x = random_values(rng, (case.batch, case.channels) + case.spatial, case.dtype, special=False)
    layout = dict(channels_last=case.channels_last)
    whole = case.spatial
    kept_shape = case.user_shape((1,) * dims)
    flat_shape = (case.batch, case.channels) if case.batched else (case.channels,)

    average = op("global_avg_pool", dims)(case.to_user(x), keepdims, **layout)
    assert average.shape == (kept_shape if keepdims else flat_shape)
    expected_average = reference.avg_pool(x, whole, whole, (0,) * dims, False, True, None)
    assert_matches(case.from_user(average.reshape(kept_shape)), expected_average)

    maximum, indices = op("global_max_pool", dims)(case.to_user(x), keepdims, True, **layout)
    expected_max, expected_indices = reference.max_pool(x, whole, whole, (0,) * dims, (1,) * dims, False)
    np.testing.assert_array_equal(case.from_user(maximum.reshape(kept_shape)), expected_max)
    np.testing.assert_array_equal(case.from_user(indices.reshape(kept_shape)), expected_indices)

    grad = rng.standard_normal(average.shape).astype(case.dtype)
    grad_kept = case.from_user(grad.reshape(kept_shape))
    input_shape = case.user_shape(case.spatial)
    average_grad = op("global_avg_pool", dims, "backward")(grad, input_shape, **layout)
    expected = reference.avg_pool_backward(grad_kept, whole, whole, whole, (0,) * dims, False, True, None)
    assert_matches(case.from_user(average_grad), expected)
    max_grad = op("global_max_pool", dims, "backward")(grad, indices, input_shape, **layout)
    expected = reference.max_pool_backward(grad_kept, expected_indices, whole)
    assert_matches(case.from_user(max_grad), expected)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", range(6))
def test_global_max_of_nan_heavy_planes_matches_torch(dims, seed):
    """Global max is adaptive max with output size 1 in PyTorch: the last NaN of a plane wins, else the first maximum."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng([85 + dims, seed])
    case = random_case(rng, dims)
    x = nan_heavy_values(rng, (case.batch, case.channels) + case.spatial, case.dtype)
    x[:, :1] = np.where(np.isnan(x[:, :1]), 1.0, x[:, :1])  # one channel without NaN: ties decide there
    pool = getattr(torch.nn.functional, f"adaptive_max_pool{dims}d")
    expected, expected_indices = (t.numpy() for t in pool(torch.from_numpy(x), 1, True))
    maximum, indices = op("global_max_pool", dims)(case.to_user(x), True, True, channels_last=case.channels_last)
    kept_shape = case.user_shape((1,) * dims)
    np.testing.assert_array_equal(case.from_user(maximum.reshape(kept_shape)), expected)
    np.testing.assert_array_equal(case.from_user(indices.reshape(kept_shape)), expected_indices)


def test_float32_mean_of_a_large_plane_stays_accurate():
    x = np.full((1, 1, 2048, 2048), 0.1, np.float32)
    x[0, 0, ::2] = 0.3
    exact = x.astype(np.float64).mean()
    assert nb.global_avg_pool2d(x)[0, 0] == pytest.approx(exact, rel=1e-7)


def test_integer_global_max_keeps_the_dtype():
    x = np.array([[[3, 9, 9, 4]]], np.uint8)  # not NumPy's default integer: a widening would show
    value, index = nb.global_max_pool1d(x, return_indices=True)
    assert value.dtype == np.uint8 and value[0, 0] == 9 and index[0, 0] == 1


def test_bad_arguments():
    x = np.ones((2, 3, 4, 4))
    with pytest.raises(TypeError, match="keepdims"):
        nb.global_avg_pool2d(x, keepdims="no")
    with pytest.raises(ValueError, match="grad_output must have shape"):
        nb.global_avg_pool2d_backward(np.ones((2, 4)), x.shape)
    with pytest.raises(ValueError, match="indices must have"):
        nb.global_max_pool2d_backward(np.ones((2, 3)), np.zeros((2, 4), np.int64), x.shape)
    with pytest.raises(ValueError, match="indices must lie"):
        nb.global_max_pool2d_backward(np.ones((2, 3)), np.full((2, 3), 16), x.shape)
    with pytest.raises(TypeError, match="accepted dtypes"):
        nb.global_avg_pool2d(x.astype(np.int64))


# --------------------------------------------------------------------------- other backends against the CPU


@pytest.mark.backends("cuda")
@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", range(4))
def test_other_backends_match_the_cpu(backend, dims, seed):
    rng, case, view = backend_case(seed + 300, dims)
    x = user_values(rng, case, special=False)
    options = dict(channels_last=case.channels_last)
    keepdims = bool(rng.random() < 0.5)
    mean = op("global_avg_pool", dims)
    expected_mean = mean(x, keepdims, **options)
    assert_same_results(backend.get(mean(backend.put(x, view), keepdims, **options)), expected_mean, exact=False)
    grad = random_values(rng, expected_mean.shape, case.dtype, special=False)
    mean_backward = op("global_avg_pool", dims, "backward")
    got = mean_backward(backend.put(grad), x.shape, **options)
    assert_same_results(backend.get(got), mean_backward(grad, x.shape, **options), exact=False)

    with_nan = user_values(rng, case)
    maximum = op("global_max_pool", dims)
    values, indices = maximum(with_nan, keepdims, True, **options)
    assert_same_results(backend.get(maximum(backend.put(with_nan, view), keepdims, True, **options)), (values, indices))
    max_backward = op("global_max_pool", dims, "backward")
    expected = max_backward(grad, indices, x.shape, **options)
    assert_same_results(backend.get(max_backward(backend.put(grad), backend.put(indices), x.shape, **options)), expected)


@pytest.mark.backends("cuda")
@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_global_max_over_planes_larger_than_a_block(backend, dtype):
    """Planes of 300 elements: the block reduction's tree must keep the CPU's tie and NaN rules."""
    rng = np.random.default_rng(12)
    x = random_values(rng, (2, 3, 20, 15), dtype)
    x[0, 0] = 7  # all ties: the first element wins
    if dtype == np.float32:
        x[0, 1, 5:, :] = np.nan  # the last NaN wins
    expected = nb.global_max_pool2d(x, return_indices=True)
    assert_same_results(backend.get(nb.global_max_pool2d(backend.put(x), return_indices=True)), expected)
    assert expected[1][0, 0] == 0
    assert dtype != np.float32 or expected[1][0, 1] == 299


@pytest.mark.backends("cuda")
@pytest.mark.parametrize("height, width, threads", [(1, 1, 1), (1, 3, 4), (7, 7, 64), (11, 12, 128)])
def test_blocks_sized_to_the_plane(backend, height, width, threads):
    """A block has as many threads as the plane has elements, rounded up to a power of two, at most
    128 (132 elements: 128 threads, some with two elements each)."""
    from numba_pool.backends.cuda import global_pool as cuda_global

    assert cuda_global._block_threads(height * width) == threads
    rng = np.random.default_rng(height * width)
    x = random_values(rng, (1, 2, height, width), np.float32)
    x[0, 1] = 3  # ties: the first element wins
    expected = nb.global_max_pool2d(x, return_indices=True)
    assert_same_results(backend.get(nb.global_max_pool2d(backend.put(x), return_indices=True)), expected)
    assert_same_results(backend.get(nb.global_avg_pool2d(backend.put(x))), nb.global_avg_pool2d(x), exact=False)
