"""Adaptive pooling and max unpooling against the reference (and PyTorch when installed)."""

import numpy as np
import pytest

import numba_pool as nb
from numba_pool import reference
from cases import backend_case, nan_heavy_values, random_case, random_values, user_values
from helpers import assert_matches, assert_same_results, op


def random_output_size(rng, spatial):
    """Per axis: smaller, equal, larger than the input (bins then overlap), or None."""
    choices = [int(rng.integers(1, length + 3)) for length in spatial]
    return tuple(None if rng.random() < 0.2 else size for size in choices)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", range(15))
def test_adaptive_pooling_matches_reference(dims, seed):
    rng = np.random.default_rng([90 + dims, seed])
    case = random_case(rng, dims)
    x = random_values(rng, (case.batch, case.channels) + case.spatial, case.dtype)
    output_size = random_output_size(rng, case.spatial)
    output_spatial = tuple(length if size is None else size for size, length in zip(output_size, case.spatial))
    layout = dict(channels_last=case.channels_last)

    y, indices = op("adaptive_max_pool", dims)(case.to_user(x), output_size, True, **layout)
    expected, expected_indices = reference.adaptive_max_pool(x, output_spatial)
    np.testing.assert_array_equal(case.from_user(y), expected)
    np.testing.assert_array_equal(case.from_user(indices), expected_indices)

    finite = np.nan_to_num(x, nan=0.0, posinf=5.0, neginf=-5.0)
    average = op("adaptive_avg_pool", dims)(case.to_user(finite), output_size, **layout)
    assert_matches(case.from_user(average), reference.adaptive_avg_pool(finite, output_spatial))

    grad = rng.standard_normal(expected.shape).astype(case.dtype)
    input_shape = case.user_shape(case.spatial)
    grad_input = op("adaptive_avg_pool", dims, "backward")(case.to_user(grad), input_shape, **layout)
    expected_grad = reference.adaptive_avg_pool_backward(grad, case.spatial)
    assert_matches(case.from_user(grad_input), expected_grad)
    grad_input = op("adaptive_max_pool", dims, "backward")(case.to_user(grad), indices, input_shape, **layout)
    assert_matches(case.from_user(grad_input), reference.max_pool_backward(grad, expected_indices, case.spatial))


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", range(8))
def test_adaptive_max_of_nan_heavy_inputs_matches_torch(dims, seed):
    """Several NaNs and ties per bin: the last NaN in bin order wins, else the first maximum (PyTorch's rule)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng([110 + dims, seed])
    case = random_case(rng, dims)
    x = nan_heavy_values(rng, (case.batch, case.channels) + case.spatial, case.dtype)
    output_spatial = tuple(int(rng.integers(1, length + 2)) for length in case.spatial)
    pool = getattr(torch.nn.functional, f"adaptive_max_pool{dims}d")
    expected, expected_indices = (t.numpy() for t in pool(torch.from_numpy(x), output_spatial, True))
    y, indices = op("adaptive_max_pool", dims)(case.to_user(x), output_spatial, True, channels_last=case.channels_last)
    np.testing.assert_array_equal(case.from_user(y), expected)
    np.testing.assert_array_equal(case.from_user(indices), expected_indices)
    reference_values, reference_indices = reference.adaptive_max_pool(x, output_spatial)
    np.testing.assert_array_equal(reference_values, expected)
    np.testing.assert_array_equal(reference_indices, expected_indices)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", range(10))
def test_adaptive_avg_backward_is_the_adjoint(dims, seed):
    rng = np.random.default_rng([95 + dims, seed])
    case = random_case(rng, dims, dtypes=(np.float64,))
    x = rng.standard_normal(case.user_shape(case.spatial))
    output_size = random_output_size(rng, case.spatial)
    y = op("adaptive_avg_pool", dims)(x, output_size, channels_last=case.channels_last)
    g = rng.standard_normal(y.shape)
    grad = op("adaptive_avg_pool", dims, "backward")(g, x.shape, channels_last=case.channels_last)
    assert np.vdot(y, g) == pytest.approx(np.vdot(x, grad), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", range(10))
def test_max_unpool_matches_reference(dims, seed):
    """Random indices (with repeats, where the later value must win) into the default or a nearby output size."""
    rng = np.random.default_rng([100 + dims, seed])
    case = random_case(rng, dims, dilation=False)
    kernel, stride, padding = case.kernel, case.stride, case.padding
    default = tuple((n - 1) * s - 2 * p + k for n, k, s, p in zip(case.spatial, kernel, stride, padding))
    if min(default) < 1:
        padding = (0,) * dims
        default = tuple((n - 1) * s + k for n, k, s in zip(case.spatial, kernel, stride))
    output_spatial = tuple(int(rng.integers(max(1, d - s + 1), d + s)) for d, s in zip(default, stride))
    x = random_values(rng, (case.batch, case.channels) + case.spatial, case.dtype, special=False)
    indices = rng.integers(0, int(np.prod(output_spatial)), size=x.shape)
    unpooled = op("max_unpool", dims)(
        case.to_user(x), case.to_user(indices), kernel, stride, padding, output_spatial, channels_last=case.channels_last
    )
    np.testing.assert_array_equal(case.from_user(unpooled), reference.max_unpool(x, indices, output_spatial))


def test_unpool_bad_arguments():
    y, indices = nb.max_pool2d(np.ones((1, 1, 4, 4)), 2, return_indices=True)
    with pytest.raises(ValueError, match="strictly between"):
        nb.max_unpool2d(y, indices, 2, output_size=(7, 4))
    with pytest.raises(ValueError, match="spatial sizes or the whole output shape"):
        nb.max_unpool2d(y, indices, 2, output_size=(4, 4, 4))
    with pytest.raises(ValueError, match="indices must lie"):
        nb.max_unpool2d(y, indices + 16, 2)
    with pytest.raises(ValueError, match="indices must have x's shape"):
        nb.max_unpool2d(y, indices[..., :1], 2)
    with pytest.raises(TypeError, match="indices must be an integer"):
        nb.max_unpool2d(y, indices.astype(float), 2)
    whole_shape = nb.max_unpool2d(y, indices, 2, output_size=(1, 1, 4, 4))
    assert whole_shape.shape == (1, 1, 4, 4)


def test_adaptive_bad_arguments():
    x = np.ones((1, 2, 6, 6))
    with pytest.raises(ValueError, match="output_size must be"):
        nb.adaptive_avg_pool2d(x, 0)
    with pytest.raises(ValueError, match="output_size must be"):
        nb.adaptive_avg_pool2d(x, (2, 2, 2))
    with pytest.raises(TypeError, match="output_size must be"):
        nb.adaptive_max_pool2d(x, 2.5)
    with pytest.raises(TypeError, match="accepted dtypes are float16, float32 or float64"):
        nb.adaptive_avg_pool2d(x.astype(np.int8), 2)
    with pytest.raises(ValueError, match="does not match input_shape"):
        nb.adaptive_avg_pool2d_backward(np.ones((1, 3, 2, 2)), x.shape)


def test_against_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(7)
    for dims, shape, size in [(1, (2, 3, 11), 4), (2, (2, 3, 9, 13), (4, 5)), (3, (1, 2, 5, 7, 6), (2, 3, 4))]:
        x = rng.standard_normal(shape)
        y, indices = op("adaptive_max_pool", dims)(x, size, True)
        expected, expected_indices = getattr(F, f"adaptive_max_pool{dims}d")(torch.from_numpy(x), size, True)
        np.testing.assert_array_equal(y, expected.numpy())
        np.testing.assert_array_equal(indices, expected_indices.numpy())
        average = op("adaptive_avg_pool", dims)(x, size)
        np.testing.assert_allclose(average, getattr(F, f"adaptive_avg_pool{dims}d")(torch.from_numpy(x), size).numpy(), rtol=1e-12)
        pooled, pool_indices = op("max_pool", dims)(x, 2, return_indices=True)
        unpooled = op("max_unpool", dims)(pooled, pool_indices, 2, output_size=shape[2:])
        expected = getattr(F, f"max_unpool{dims}d")(torch.from_numpy(pooled), torch.from_numpy(pool_indices), 2, output_size=shape[2:])
        np.testing.assert_array_equal(unpooled, expected.numpy())


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("memory", ["channels_first", "channels_last", "strided"])
def test_adaptive_avg_to_the_input_size_is_exact_in_every_memory(dims, memory):
    """Output size = input size (VGG's AdaptiveAvgPool2d((7, 7)) on 7 x 7 maps): every bin holds one
    element, so forward and backward return exact copies, in the input's memory format."""
    rng = np.random.default_rng(dims)
    spatial = (5, 6, 7)[-dims:]
    x = rng.standard_normal((2, 4) + spatial).astype(np.float32)
    if memory == "channels_last":
        x = np.moveaxis(np.ascontiguousarray(np.moveaxis(x, 1, -1)), -1, 1)
    elif memory == "strided":
        x = np.repeat(x, 2, axis=-1)[..., ::2]
    x.flat[0] = -0.0  # the kernels' sums start from +0.0, so the result holds +0.0 there
    pool = op("adaptive_avg_pool", dims)
    y = pool(x, spatial)
    assert not np.signbit(y.flat[0])
    np.testing.assert_array_equal(y, reference.adaptive_avg_pool(np.ascontiguousarray(x), spatial).astype(np.float32))
    assert np.array_equal(y, x) and not np.shares_memory(y, x)  # (-0.0 == +0.0)
    assert (y.strides[1] < y.strides[-1]) == (memory == "channels_last")  # the output follows the input's memory
    grad = rng.standard_normal(y.shape).astype(np.float32)
    grad_input = op("adaptive_avg_pool", dims, "backward")(grad, x.shape)
    assert np.array_equal(grad_input, grad) and not np.shares_memory(grad_input, grad)


# --------------------------------------------------------------------------- other backends against the CPU


def backend_output_size(rng, spatial):
    """Like ``random_output_size`` (its own draws, so the backend cases stay as they were)."""
    return tuple(None if rng.random() < 0.2 else int(rng.integers(1, n + 3)) for n in spatial)


@pytest.mark.backends("cuda")
@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", range(4))
def test_adaptive_pooling_on_other_backends_matches_the_cpu(backend, dims, seed):
    rng, case, view = backend_case(seed + 400, dims)
    x = user_values(rng, case, special=False)
    size = backend_output_size(rng, case.spatial)
    options = dict(channels_last=case.channels_last)
    mean = op("adaptive_avg_pool", dims)
    expected_mean = mean(x, size, **options)
    assert_same_results(backend.get(mean(backend.put(x, view), size, **options)), expected_mean, exact=False)
    grad = random_values(rng, expected_mean.shape, case.dtype, special=False)
    mean_backward = op("adaptive_avg_pool", dims, "backward")
    got = mean_backward(backend.put(grad, view), x.shape, **options)
    assert_same_results(backend.get(got), mean_backward(grad, x.shape, **options), exact=False)

    with_nan = user_values(rng, case)
    maximum = op("adaptive_max_pool", dims)
    values, indices = maximum(with_nan, size, True, **options)
    assert_same_results(backend.get(maximum(backend.put(with_nan, view), size, True, **options)), (values, indices))
    max_backward = op("adaptive_max_pool", dims, "backward")
    expected = max_backward(grad, indices, x.shape, **options)
    got = max_backward(backend.put(grad), backend.put(indices, view), x.shape, **options)
    assert_same_results(backend.get(got), expected)


@pytest.mark.backends("cuda")
@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", range(4))
def test_max_unpool_on_other_backends_matches_the_cpu(backend, dims, seed):
    """Indices of a real max pooling when its shapes fit, else random ones (repeats: the last value wins)."""
    rng, case, view = backend_case(seed + 500, dims, dilation=False, dtypes=(np.float32, np.int64))
    kernel, stride, padding = case.kernel, case.stride, case.padding
    default = tuple((n - 1) * s - 2 * p + k for n, k, s, p in zip(case.spatial, kernel, stride, padding))
    if min(default) < 1:
        padding = (0,) * dims
        default = tuple((n - 1) * s + k for n, k, s in zip(case.spatial, kernel, stride))
    x = user_values(rng, case)
    options = dict(kernel_size=kernel, stride=stride, padding=padding, channels_last=case.channels_last)
    indices = rng.integers(0, int(np.prod(default)), size=x.shape)
    source = random_values(rng, case.user_shape(default), case.dtype)
    try:
        pooled, pooled_indices = op("max_pool", dims)(source, return_indices=True, **options)
        if pooled_indices.shape == x.shape:
            indices = pooled_indices
    except ValueError:  # these window parameters do not pool an input of the default size
        pass
    unpool = op("max_unpool", dims)
    expected = unpool(x, indices, **options)
    assert_same_results(backend.get(unpool(backend.put(x, view), backend.put(indices), **options)), expected)
