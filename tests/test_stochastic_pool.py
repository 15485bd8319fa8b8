"""Stochastic pooling: distribution of picks, inference formula, reproducibility, layouts, gradients."""

import numba
import numpy as np
import pytest

import numba_pool as nb
from numba_pool import reference
from cases import backend_case, random_case, random_values, user_values, window_options
from helpers import assert_matches, assert_same_results, op

# chi-square critical value for 3 degrees of freedom at p = 0.001; the draws are seeded, so not flaky.
CHI_SQUARE_3_DOF_0_001 = 16.27


def repeated_window(window, copies):
    """One channel holding ``copies`` side-by-side copies of a 1-D window."""
    return np.tile(np.asarray(window, np.float64), copies).reshape(1, 1, -1)


def pick_frequencies(window, copies=40_000, seed=0):
    x = repeated_window(window, copies)
    _, indices = nb.stochastic_pool1d(x, len(window), seed=seed, return_indices=True)
    return np.bincount(indices.ravel() % len(window), minlength=len(window)) / copies


def test_the_seed_example():
    window = np.array([[[1.0, 2.0, 3.0, 4.0]]])
    assert nb.stochastic_pool1d(window, 4, training=False)[0, 0, 0] == 3.0
    value, index = nb.stochastic_pool1d(window, 4, seed=123, return_indices=True)
    assert value[0, 0, 0] == window[0, 0, index[0, 0, 0]]


@pytest.mark.parametrize(
    "window, probabilities",
    [([1.0, 2.0, 3.0, 4.0], [0.1, 0.2, 0.3, 0.4]),
     ([-1.0, 0.0, 2.0, 6.0], [0.0, 0.0, 0.25, 0.75]),
     ([0.0, -1.0, -2.0, 0.0], [0.25, 0.25, 0.25, 0.25])],
)
def test_picks_follow_the_weights(window, probabilities):
    copies = 40_000
    observed = pick_frequencies(window, copies) * copies
    expected = np.array(probabilities) * copies
    impossible = expected == 0
    assert observed[impossible].sum() == 0  # zero weight is never picked while something else has weight
    chi_square = (((observed - expected) ** 2)[~impossible] / expected[~impossible]).sum()
    assert chi_square < CHI_SQUARE_3_DOF_0_001


def test_picks_are_reproducible_and_depend_on_the_seed():
    x = np.random.default_rng(0).random((2, 3, 16, 16))
    first = nb.stochastic_pool2d(x, 2, seed=7, return_indices=True)[1]
    np.testing.assert_array_equal(nb.stochastic_pool2d(x, 2, seed=7, return_indices=True)[1], first)
    assert not np.array_equal(nb.stochastic_pool2d(x, 2, seed=8, return_indices=True)[1], first)
    fresh = [nb.stochastic_pool2d(x, 2, return_indices=True)[1] for _ in range(2)]
    assert not np.array_equal(*fresh)  # seed=None draws a new seed every call
    generator = np.random.default_rng(5)
    advancing = [nb.stochastic_pool2d(x, 2, seed=generator, return_indices=True)[1] for _ in range(2)]
    assert not np.array_equal(*advancing)
    replay = nb.stochastic_pool2d(x, 2, seed=np.random.default_rng(5), return_indices=True)[1]
    np.testing.assert_array_equal(replay, advancing[0])


@pytest.mark.parallel_kernels  # thread counts
def test_picks_do_not_depend_on_the_thread_count(monkeypatch):
    monkeypatch.setattr(nb.backends.cpu._threading, "SERIAL_BELOW", 0)  # a small array: the parallel kernel all the same
    x = np.random.default_rng(1).random((3, 4, 20, 20)).astype(np.float32)
    picks = []
    for threads in (1, numba.config.NUMBA_NUM_THREADS):
        numba.set_num_threads(threads)
        picks.append(nb.stochastic_pool2d(x, 3, 2, 1, seed=11, return_indices=True)[1])
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    np.testing.assert_array_equal(*picks)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", range(12))
def test_layouts_and_views_pick_the_same_elements(dims, seed):
    rng = np.random.default_rng([50 + dims, seed])
    case = random_case(rng, dims, dilation=False)
    x = random_values(rng, (case.batch, case.channels) + case.spatial, case.dtype)
    arguments = (case.kernel, case.stride, case.padding, case.ceil_mode)
    pool = op("stochastic_pool", dims)
    canonical_y, canonical_indices = pool(x, *arguments, seed=seed, return_indices=True)
    y, indices = pool(case.to_user(x), *arguments, seed=seed, return_indices=True, channels_last=case.channels_last)
    np.testing.assert_array_equal(case.from_user(indices), canonical_indices)
    np.testing.assert_array_equal(case.from_user(y), canonical_y)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", range(15))
def test_training_picks_and_inference_match_the_reference(dims, seed):
    rng = np.random.default_rng([60 + dims, seed])
    case = random_case(rng, dims, dilation=False)
    x = random_values(rng, (case.batch, case.channels) + case.spatial, case.dtype, special=False)
    x[rng.random(x.shape) < 0.02] = np.nan
    arguments = (case.kernel, case.stride, case.padding, case.ceil_mode)
    pool = op("stochastic_pool", dims)
    user_x = case.to_user(x)

    expected = reference.stochastic_pool_inference(x, *arguments)
    inference = pool(user_x, *arguments, training=False, channels_last=case.channels_last)
    assert_matches(case.from_user(inference), expected)

    y, indices = pool(user_x, *arguments, seed=seed, return_indices=True, channels_last=case.channels_last)
    y, indices = case.from_user(y), case.from_user(indices)
    planes = x.reshape(x.shape[:2] + (int(np.prod(case.spatial)),))
    for position, points in reference.in_input_windows(case.spatial, *arguments):
        allowed = np.array([np.ravel_multi_index(p, case.spatial) for p in points])
        values = planes[..., allowed]
        picked = indices[(...,) + position]
        for n, c in np.ndindex(picked.shape):
            window = values[n, c]
            if np.isnan(window).any():
                assert picked[n, c] == allowed[np.argmax(np.isnan(window))] and np.isnan(y[(n, c) + position])
                continue
            candidates = allowed[window > 0] if (window > 0).any() else allowed
            assert picked[n, c] in candidates
            assert y[(n, c) + position] == planes[n, c, picked[n, c]]


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", range(8))
def test_gradients(dims, seed):
    rng = np.random.default_rng([70 + dims, seed])
    case = random_case(rng, dims, dilation=False, dtypes=(np.float64,))
    x = np.round(rng.standard_normal((case.batch, case.channels) + case.spatial), 1)
    arguments = (case.kernel, case.stride, case.padding, case.ceil_mode)
    layout = dict(channels_last=case.channels_last)
    y, indices = op("stochastic_pool", dims)(case.to_user(x), *arguments, seed=seed, return_indices=True, **layout)
    grad = rng.standard_normal(case.from_user(y).shape)
    backward = op("stochastic_pool", dims, "backward")
    training_grad = backward(case.to_user(grad), indices, case.user_shape(case.spatial), **layout)
    expected = reference.max_pool_backward(grad, case.from_user(indices), case.spatial)
    assert_matches(case.from_user(training_grad), expected)

    inference_grad = op("stochastic_pool", dims, "inference_backward")(case.to_user(grad), case.to_user(x), *arguments, **layout)
    expected = reference.stochastic_pool_inference_backward(x, grad, *arguments)
    assert_matches(case.from_user(inference_grad), expected)


def test_inference_gradient_matches_finite_differences():
    rng = np.random.default_rng(3)
    x = rng.uniform(0.5, 2.0, (1, 2, 5, 5))
    x[0, 1] = -np.abs(x[0, 1])  # a channel of non-positive windows: the mean branch
    x[0, 0, 0, 0] = -1.0  # a negative element inside a positive window
    g = rng.standard_normal((1, 2, 3, 3))
    analytic = nb.stochastic_pool2d_inference_backward(g, x, 3, 2, 1)
    numeric = np.zeros_like(x)
    step = 1e-6
    for index in np.ndindex(x.shape):
        shifted = [x.copy(), x.copy()]
        shifted[0][index] += step
        shifted[1][index] -= step
        values = [np.vdot(nb.stochastic_pool2d(s, 3, 2, 1, training=False), g) for s in shifted]
        numeric[index] = (values[0] - values[1]) / (2 * step)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-6)


def test_bad_arguments():
    x = np.ones((1, 1, 4, 4))
    with pytest.raises(TypeError, match="seed must be"):
        nb.stochastic_pool2d(x, 2, seed=1.5)
    with pytest.raises(ValueError, match="seed must be"):
        nb.stochastic_pool2d(x, 2, seed=-1)
    with pytest.raises(ValueError, match="return_indices=True needs training=True"):
        nb.stochastic_pool2d(x, 2, training=False, return_indices=True)
    with pytest.raises(TypeError, match="accepted dtypes are float16, float32 or float64"):
        nb.stochastic_pool2d(x.astype(np.int32), 2)
    with pytest.raises(ValueError, match="grad_output must have"):
        nb.stochastic_pool2d_inference_backward(np.ones((1, 1, 3, 3)), x, 2)


# --------------------------------------------------------------------------- other backends against the CPU


@pytest.mark.backends("cuda")
@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", range(6))
def test_other_backends_pick_the_cpus_elements(backend, dims, seed):
    rng, case, view = backend_case(seed + 200, dims, dilation=False)
    x = user_values(rng, case)
    forward = op("stochastic_pool", dims)
    options = dict(window_options(case), channels_last=case.channels_last)
    expected = forward(x, seed=seed, return_indices=True, **options)
    got = forward(backend.put(x, view), seed=seed, return_indices=True, **options)
    assert_same_results(backend.get(got), expected)
    inference = forward(backend.put(x, view), training=False, **options)
    assert_same_results(backend.get(inference), forward(x, training=False, **options))

    grad = random_values(rng, expected[0].shape, case.dtype, special=False)
    backward = op("stochastic_pool", dims, "backward")
    host_gradient = backward(grad, expected[1], x.shape, channels_last=case.channels_last)
    assert_same_results(backend.get(backward(backend.put(grad), got[1], x.shape, channels_last=case.channels_last)), host_gradient)

    inference_backward = op("stochastic_pool", dims, "inference_backward")
    x_finite = user_values(rng, case, special=False)
    expected_inference = inference_backward(grad, x_finite, **options)
    got = inference_backward(backend.put(grad), backend.put(x_finite, view), **options)
    assert_same_results(backend.get(got), expected_inference, exact=False)
