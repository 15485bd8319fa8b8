"""Layer objects: forward/backward agree with the functions, state rules, stochastic modes."""

import numpy as np
import pytest

import numba_pool as nb

RNG = np.random.default_rng(0)


def layer_cases(dims):
    """(layer, forward function, backward function) triples using the functional API directly."""
    shape = (2, 3) + (7,) * dims
    x = RNG.standard_normal(shape)
    f = lambda name: getattr(nb, name.format(d=dims))  # noqa: E731
    forward_max = lambda x: f("max_pool{d}d")(x, 3, 2, 1, 1, True, True)  # noqa: E731
    forward_adaptive = lambda x: f("adaptive_max_pool{d}d")(x, 3, True)  # noqa: E731
    forward_global = lambda x: f("global_max_pool{d}d")(x, False, True)  # noqa: E731
    return x, [
        (f("MaxPool{d}d")(3, 2, 1, ceil_mode=True), lambda x: forward_max(x)[0],
         lambda g, x: f("max_pool{d}d_backward")(g, forward_max(x)[1], x.shape)),
        (f("AvgPool{d}d")(3, 2, 1, count_include_pad=False), lambda x: f("avg_pool{d}d")(x, 3, 2, 1, False, False),
         lambda g, x: f("avg_pool{d}d_backward")(g, x.shape, 3, 2, 1, False, False)),
        (f("GlobalAvgPool{d}d")(), lambda x: f("global_avg_pool{d}d")(x),
         lambda g, x: f("global_avg_pool{d}d_backward")(g, x.shape)),
        (f("GlobalMaxPool{d}d")(), lambda x: forward_global(x)[0],
         lambda g, x: f("global_max_pool{d}d_backward")(g, forward_global(x)[1], x.shape)),
        (f("AdaptiveAvgPool{d}d")(3), lambda x: f("adaptive_avg_pool{d}d")(x, 3),
         lambda g, x: f("adaptive_avg_pool{d}d_backward")(g, x.shape)),
        (f("AdaptiveMaxPool{d}d")(3), lambda x: forward_adaptive(x)[0],
         lambda g, x: f("adaptive_max_pool{d}d_backward")(g, forward_adaptive(x)[1], x.shape)),
    ]


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_layers_match_the_functions(dims):
    x, cases = layer_cases(dims)
    for layer, forward, backward in cases:
        y = layer(x)
        np.testing.assert_array_equal(y, forward(x), err_msg=repr(layer))
        g = RNG.standard_normal(y.shape)
        np.testing.assert_array_equal(layer.backward(g), backward(g, x), err_msg=repr(layer))


@pytest.mark.parametrize("layer", [nb.MaxPool2d(2), nb.AvgPool1d(2), nb.StochasticPool3d(2), nb.GlobalAvgPool2d(),
                                   nb.GlobalMaxPool1d(), nb.AdaptiveAvgPool2d(2), nb.AdaptiveMaxPool3d(1)])
def test_backward_before_forward_is_a_clear_error(layer):
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.ones((1, 1, 1, 1)))


def test_stochastic_layer_modes():
    x = np.abs(RNG.standard_normal((2, 3, 8, 8))) + 0.1
    layer = nb.StochasticPool2d(2, seed=5)
    assert layer.training
    first = layer(x)
    again = nb.StochasticPool2d(2, seed=5)(x)
    np.testing.assert_array_equal(first, again)  # same seed: same samples
    assert not np.array_equal(layer(x), first)  # the next training call draws new samples
    g = RNG.standard_normal(first.shape)
    grad = layer.backward(g)
    np.testing.assert_allclose(grad.sum(), g.sum())  # every gradient lands on one sampled element

    assert layer.eval() is layer and not layer.training
    expected = layer(x)
    np.testing.assert_allclose(expected, nb.stochastic_pool2d(x, 2, training=False))
    np.testing.assert_allclose(layer.backward(g), nb.stochastic_pool2d_inference_backward(g, x, 2))
    assert layer.train() is layer and layer.training


@pytest.mark.parametrize("make", [lambda: nb.AvgPool2d(3, 2, 1), lambda: nb.StochasticPool2d(3, 2, 1).eval(),
                                  lambda: nb.AdaptiveAvgPool2d((2, 3)), lambda: nb.GlobalAvgPool2d(keepdims=True)])
def test_smooth_layers_pass_a_finite_difference_check(make):
    layer = make()
    x = RNG.uniform(-1, 2, (1, 2, 5, 6))
    g = RNG.standard_normal(layer(x).shape)
    analytic = layer.backward(g)
    numeric = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[index] += 1e-6
        down[index] -= 1e-6
        numeric[index] = (np.vdot(make()(up), g) - np.vdot(make()(down), g)) / 2e-6
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-6)


def test_channels_last_layers():
    x = RNG.standard_normal((2, 6, 6, 3))
    layer = nb.MaxPool2d(2, channels_last=True)
    y = layer(x)
    assert y.shape == (2, 3, 3, 3)
    assert layer.backward(np.ones_like(y)).shape == x.shape
