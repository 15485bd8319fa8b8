"""padding="same" / "valid" (TensorFlow's and JAX's padding modes) for max, average, stochastic and Lp pooling.

The oracle here is written from TensorFlow's documentation, independently of
``numba_pool._spec``: ceil(L / stride) outputs, the input padded explicitly
(with -inf for max pooling, 0 otherwise; the extra element after the input),
windows read from the padded array and counted over their elements inside the
input. Backward passes are checked against the same windows (each gradient
sent to the argmax, or spread / differentiated over the window's inside taps).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import numba_pool
from cases import FLOAT64_VIEWS
from helpers import op

# --------------------------------------------------------------------------- the TensorFlow oracle


def tf_same(length, kernel, stride, dilation):
    """(outputs, padding before, padding after) of TensorFlow's 'SAME' along one axis."""
    out = math.ceil(length / stride)
    total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - length, 0)
    return out, total // 2, total - total // 2


def tf_windows(x, kernel, stride, dilation, fill):
    """The padded windows of a (N, C, *spatial) array: values (N, C, *out, taps), inside mask (*out, taps),
    and each tap's flat index in the unpadded plane (-1 in the padding)."""
    spatial = x.shape[2:]
    geometry = [tf_same(*a) for a in zip(spatial, kernel, stride, dilation)]
    widths = [(before, after) for _, before, after in geometry]
    padded = np.pad(x.astype(np.float64), [(0, 0), (0, 0)] + widths, constant_values=fill)
    flat = np.pad(np.arange(math.prod(spatial)).reshape(spatial), widths, constant_values=-1)
    out_shape = tuple(out for out, _, _ in geometry)
    taps = math.prod(kernel)
    values = np.empty(x.shape[:2] + out_shape + (taps,))
    index = np.empty(out_shape + (taps,), np.int64)
    for position in itertools.product(*map(range, out_shape)):
        coordinates = [[o * s + i * d for i in range(k)] for o, s, d, k in zip(position, stride, dilation, kernel)]
        box = np.ix_(*coordinates)
        values[(Ellipsis, *position, slice(None))] = padded[(Ellipsis, *box)].reshape(x.shape[:2] + (taps,))
        index[position] = flat[box].reshape(-1)
    return values, index >= 0, index


def tf_max(x, kernel, stride, dilation):
    values, inside, index = tf_windows(x, kernel, stride, dilation, -np.inf)
    best = np.argmax(values, axis=-1)  # first maximum in window order (random values: no ties)
    flat = np.take_along_axis(np.broadcast_to(index, values.shape), best[..., None], -1)[..., 0]
    return values.max(axis=-1), flat


def tf_avg(x, kernel, stride, count_include_pad=False):
    values, inside, _ = tf_windows(x, kernel, stride, (1,) * len(kernel), 0.0)
    divisor = math.prod(kernel) if count_include_pad else inside.sum(axis=-1)
    return values.sum(axis=-1) / divisor


def tf_lp(x, p, kernel, stride):
    values, inside, _ = tf_windows(x, kernel, stride, (1,) * len(kernel), 0.0)
    if p == np.inf:
        return np.abs(values).max(axis=-1)
    return (values**p).sum(axis=-1) ** (1 / p)


def tf_stochastic_inference(x, kernel, stride):
    """sum(w * x) / sum(w), w = max(x, 0), over the inside elements (x > 0 here, so sum(w) > 0)."""
    values, inside, _ = tf_windows(x, kernel, stride, (1,) * len(kernel), 0.0)
    weights = np.maximum(values, 0) * inside
    return (weights * values).sum(axis=-1) / weights.sum(axis=-1)


def scatter_windows(x_shape, kernel, stride, dilation, window_gradient):
    """Sum over windows of ``window_gradient(values, inside, index)`` -> (N, C, *out, taps) per-tap gradients."""
    x = np.zeros(x_shape)
    values, inside, index = tf_windows(x, kernel, stride, dilation, 0.0)
    per_tap = window_gradient(inside)
    grad = np.zeros((x_shape[0], x_shape[1], math.prod(x_shape[2:])))
    flat_index = np.broadcast_to(index, per_tap.shape).reshape(x_shape[:2] + (-1,))
    contributions = per_tap.reshape(x_shape[:2] + (-1,))
    for n, c in itertools.product(range(x_shape[0]), range(x_shape[1])):
        keep = flat_index[n, c] >= 0
        np.add.at(grad[n, c], flat_index[n, c][keep], contributions[n, c][keep])
    return grad.reshape(x_shape)


# --------------------------------------------------------------------------- cases and layouts


def random_same_case(seed, dims, dilation=False):
    rng = np.random.default_rng(seed)
    spatial = tuple(int(v) for v in rng.integers(1, {1: 9, 2: 7, 3: 5}[dims], dims))
    kernel = tuple(int(v) for v in rng.integers(1, 5, dims))
    stride = tuple(int(v) for v in rng.integers(1, 4, dims))
    dil = tuple(int(v) for v in rng.integers(1, 4, dims)) if dilation else (1,) * dims
    channels_last, batched = bool(rng.random() < 0.4), bool(rng.random() < 0.7)
    dtype = np.float64 if rng.random() < 0.5 else np.float32
    shape = (int(rng.integers(1, 3)) if batched else 1, int(rng.integers(1, 3))) + spatial
    return rng, shape, kernel, stride, dil, channels_last, batched, dtype


def to_user(x, channels_last, batched):
    x = np.moveaxis(x, 1, -1) if channels_last else x
    return np.ascontiguousarray(x if batched else x[0])


def from_user(y, channels_last, batched):
    y = y if batched else y[None]
    return np.moveaxis(y, -1, 1) if channels_last else y


def has_empty_window(spatial, kernel, stride, dilation):
    """Whether some 'same' window holds only padding (possible with dilation only)."""
    for length, k, s, d in zip(spatial, kernel, stride, dilation):
        out, before, _ = tf_same(length, k, s, d)
        for o in range(out):
            if not any(0 <= o * s - before + i * d < length for i in range(k)):
                return True
    return False


def put(backend, array):
    """``array`` on the backend; every other element of a wider buffer for odd-sized last axes (strided input),
    float32 only (cases.FLOAT64_VIEWS)."""
    strided = array.shape[-1] % 2 and (array.dtype != np.float64 or "step" in FLOAT64_VIEWS)
    return backend.put(array, "step" if strided else "contiguous")


def close(got, expected, dtype, err_msg=""):
    rtol = 1e-5 if dtype == np.float32 else 1e-11
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol, err_msg=err_msg)


# --------------------------------------------------------------------------- forward and backward against the oracle


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", range(6))
def test_max_pool_same_matches_tensorflow(backend, dims, seed):
    rng, shape, kernel, stride, dilation, last, batched, dtype = random_same_case([1, dims, seed], dims, dilation=True)
    x = rng.standard_normal(shape).astype(dtype)
    user = to_user(x, last, batched)
    forward = op("max_pool", dims)
    if has_empty_window(shape[2:], kernel, stride, dilation):
        with pytest.raises(ValueError, match="holds only padding"):
            forward(put(backend, user), kernel, stride, "same", dilation, channels_last=last)
        return
    expected, expected_indices = tf_max(x, kernel, stride, dilation)
    if backend.name == "dask":
        y = backend.get(forward(put(backend, user), kernel, stride, "same", dilation, channels_last=last))
        close(from_user(y, last, batched), expected, dtype)
        return
    y, indices = backend.get(forward(put(backend, user), kernel, stride, "same", dilation, return_indices=True, channels_last=last))
    assert y.dtype == dtype and from_user(y, last, batched).shape == expected.shape
    np.testing.assert_array_equal(from_user(y, last, batched), expected.astype(dtype))
    np.testing.assert_array_equal(from_user(indices, last, batched), expected_indices)

    grad = rng.standard_normal(expected.shape).astype(dtype)
    got = op("max_pool", dims, "backward")(put(backend, to_user(grad, last, batched)), put(backend, indices), user.shape,
                                           channels_last=last)
    taps = math.prod(kernel)
    expected_grad = np.zeros(shape[:2] + (math.prod(shape[2:]),))
    for n, c in itertools.product(range(shape[0]), range(shape[1])):
        np.add.at(expected_grad[n, c], expected_indices[n, c].reshape(-1), grad[n, c].reshape(-1).astype(np.float64))
    assert taps >= 1
    close(from_user(backend.get(got), last, batched), expected_grad.reshape(shape), dtype)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", range(6))
def test_avg_pool_same_matches_tensorflow(backend, dims, seed):
    rng, shape, kernel, stride, _, last, batched, dtype = random_same_case([2, dims, seed], dims)
    include = [None, False, True][seed % 3]  # None: the default, which under 'same' excludes padding
    x = rng.standard_normal(shape).astype(dtype)
    user = to_user(x, last, batched)
    expected = tf_avg(x, kernel, stride, count_include_pad=bool(include))
    padding = "same" if seed % 2 else "SAME"
    y = backend.get(op("avg_pool", dims)(put(backend, user), kernel, stride, padding, count_include_pad=include, channels_last=last))
    assert y.dtype == dtype
    close(from_user(y, last, batched), expected, dtype, f"{shape} {kernel} {stride} {include}")
    if backend.name == "dask":
        return
    grad = rng.standard_normal(expected.shape)
    got = op("avg_pool", dims, "backward")(put(backend, to_user(grad.astype(dtype), last, batched)), user.shape, kernel,
                                           stride, padding, count_include_pad=include, channels_last=last)

    def per_tap(inside):
        divisor = math.prod(kernel) if include else inside.sum(axis=-1, keepdims=True)
        return grad[..., None] * inside / divisor

    close(from_user(backend.get(got), last, batched), scatter_windows(shape, kernel, stride, (1,) * dims, per_tap), dtype)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", range(6))
def test_lp_pool_same_matches_tensorflow_style_windows(backend, dims, seed):
    rng, shape, kernel, stride, _, last, batched, dtype = random_same_case([3, dims, seed], dims)
    p = [1.0, 2.0, 3.0, 1.5, np.inf][seed % 5]
    x = (rng.random(shape) + 0.1).astype(dtype)  # positive: no NaN from fractional powers, no zero windows
    user = to_user(x, last, batched)
    expected = tf_lp(x, p, kernel, stride)
    forward = op("lp_pool", dims)
    y = backend.get(forward(put(backend, user), p, kernel, stride, padding="same", channels_last=last))
    close(from_user(y, last, batched), expected, dtype, f"p={p} {shape} {kernel} {stride}")
    if backend.name == "dask" or p == np.inf:
        return
    grad = rng.standard_normal(expected.shape)
    got = op("lp_pool", dims, "backward")(put(backend, to_user(grad.astype(dtype), last, batched)), put(backend, user), p,
                                          kernel, stride, padding="same", channels_last=last)
    values, inside, index = tf_windows(x, kernel, stride, (1,) * dims, 0.0)
    # d/dx (sum x**p) ** (1/p) = (sum x**p) ** (1/p - 1) * x ** (p - 1), per tap of each window
    coefficient = ((values**p).sum(axis=-1) ** (1 / p - 1) * grad)[..., None] * values ** (p - 1) * inside
    expected_grad = scatter_windows(shape, kernel, stride, (1,) * dims, lambda inside: coefficient)
    close(from_user(backend.get(got), last, batched), expected_grad, dtype, f"p={p}")


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", range(4))
def test_stochastic_inference_same_matches_tensorflow_style_windows(backend, dims, seed):
    rng, shape, kernel, stride, _, last, batched, dtype = random_same_case([4, dims, seed], dims)
    x = (rng.random(shape) + 0.1).astype(dtype)
    user = to_user(x, last, batched)
    y = backend.get(op("stochastic_pool", dims)(put(backend, user), kernel, stride, "same", training=False, channels_last=last))
    close(from_user(y, last, batched), tf_stochastic_inference(x, kernel, stride), dtype)
    if backend.name != "dask":  # training picks land in their windows' inside elements, and shapes agree
        picked, indices = backend.get(op("stochastic_pool", dims)(put(backend, user), kernel, stride, "same", seed=seed,
                                                                  return_indices=True, channels_last=last))
        _, _, index = tf_windows(x, kernel, stride, (1,) * dims, 0.0)
        indices = from_user(indices, last, batched)
        assert all(i in index[pos] for (n, c, *pos), i in np.ndenumerate(indices) for pos in [tuple(pos)])


# --------------------------------------------------------------------------- 'valid', dask, the rules


@pytest.mark.parametrize("dims", [1, 2])
def test_valid_is_padding_zero_with_or_without_ceil_mode(dims):
    rng = np.random.default_rng(dims)
    x = rng.standard_normal((2, 3) + (7,) * dims).astype(np.float32)
    for name, arguments in (("max_pool", ()), ("avg_pool", ()), ("stochastic_pool", ())):
        for ceil_mode in (False, True):
            got = op(name, dims)(x, 3, 2, "valid", *arguments, ceil_mode=ceil_mode) if name != "stochastic_pool" else \
                op(name, dims)(x, 3, 2, "Valid", ceil_mode, False)
            expected = op(name, dims)(x, 3, 2, 0, *arguments, ceil_mode=ceil_mode) if name != "stochastic_pool" else \
                op(name, dims)(x, 3, 2, 0, ceil_mode, False)
            np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(op("lp_pool", dims)(x, 2.0, 3, 2, True, padding="VALID"), op("lp_pool", dims)(x, 2.0, 3, 2, True))


def test_same_output_sizes_and_far_side_padding():
    x = np.arange(7.0)[None, None]
    # L=7, k=3, s=2: 4 outputs, padding 1 before and 1 after; k=4, s=2: padding 1 before, 2 after.
    np.testing.assert_array_equal(numba_pool.max_pool1d(x, 3, 2, "same"), [[[1, 3, 5, 6]]])
    np.testing.assert_allclose(numba_pool.avg_pool1d(x, 4, 2, "same"), [[[1.0, 2.5, 4.5, 5.5]]])
    np.testing.assert_allclose(numba_pool.avg_pool1d(x, 4, 2, "same", count_include_pad=True), [[[0.75, 2.5, 4.5, 2.75]]])
    # dilation 3, kernel 2: effective kernel 4, padding 1 before and 2 after.
    np.testing.assert_array_equal(numba_pool.max_pool1d(x, 2, 1, "same", dilation=3), [[[2, 3, 4, 5, 6, 4, 5]]])
    # 'same' padding may exceed kernel_size // 2 (k=2, s=1: padding 0 before, 1 after; k=1, s=3 pads nothing).
    assert numba_pool.avg_pool1d(x, 2, 1, "same").shape == (1, 1, 7)
    assert numba_pool.max_pool1d(x, 1, 3, "same").shape == (1, 1, 3)
    assert numba_pool.max_pool2d(np.ones((1, 1, 5, 9)), (5, 2), (1, 4), "same").shape == (1, 1, 5, 3)


def test_existing_calls_keep_their_results():
    """count_include_pad's default (None) is True for numeric padding: PyTorch's results, as before."""
    x = np.arange(10.0).reshape(1, 1, 10)
    np.testing.assert_allclose(numba_pool.avg_pool1d(x, 3, 2, 1), numba_pool.avg_pool1d(x, 3, 2, 1, count_include_pad=True))
    np.testing.assert_allclose(numba_pool.avg_pool1d(x, 3, 2, 1)[0, 0, 0], 1 / 3)
    layer = numba_pool.layers.AvgPool1d(3, 2, 1) if hasattr(numba_pool, "layers") else None
    if layer is not None:
        np.testing.assert_allclose(layer(x), numba_pool.avg_pool1d(x, 3, 2, 1))


def test_layers_take_same_padding():
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 5))
    layers = numba_pool.layers
    np.testing.assert_allclose(layers.AvgPool2d(3, 2, "same")(x), tf_avg(x, (3, 3), (2, 2)))
    np.testing.assert_array_equal(layers.MaxPool2d(3, 2, "same")(x), tf_max(x, (3, 3), (2, 2), (1, 1))[0])


def test_dask_equals_numpy_under_same_with_small_chunks():
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 11, 9))
    lazy = da.from_array(x, chunks=(1, 2, 3, 2))
    for name, call in (
        ("max_pool2d", lambda f, a: f(a, 3, 2, "same", (2, 1))),
        ("avg_pool2d", lambda f, a: f(a, (4, 3), (3, 2), "same")),
        ("lp_pool2d", lambda f, a: f(np.abs(a) if isinstance(a, np.ndarray) else abs(a), 2.0, (4, 2), 3, padding="same")),
        ("stochastic_pool2d", lambda f, a: f(a, (2, 4), 1, "same", training=False)),
    ):
        expected = call(getattr(numba_pool, name), x)
        got = call(getattr(numba_pool, name), lazy)
        assert isinstance(got, da.Array), name
        got = got.compute()
        np.testing.assert_allclose(got, expected, rtol=1e-12, err_msg=name)


@pytest.mark.parametrize("name", ["max_pool2d", "avg_pool2d", "stochastic_pool2d"])
def test_bad_padding_strings_and_ceil_mode_are_refused(name):
    x = np.zeros((1, 1, 5, 5))
    function = getattr(numba_pool, name)
    for bad in ("full", "", "causal", "same "):
        with pytest.raises(ValueError, match=r"padding must be .*'same' or 'valid'.*got '"):
            function(x, 3, 1, bad)
    with pytest.raises(ValueError, match="ceil_mode=True cannot be combined with padding='same'"):
        function(x, 3, 2, "same", ceil_mode=True)
    with pytest.raises(ValueError, match="ceil_mode"):
        numba_pool.lp_pool2d(x, 2.0, 3, 2, True, padding="same")
    with pytest.raises(ValueError, match="padding must be"):
        numba_pool.lp_pool2d(x, 2.0, 3, 2, padding="half")


def test_jax_reduce_window_agrees_when_installed():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp
    from jax import lax

    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 3, 9, 6)).astype(np.float32)  # jax's default precision
    for kernel, stride, dilation in (((3, 2), (2, 2), (1, 1)), ((4, 3), (3, 1), (2, 1)), ((2, 5), (1, 4), (1, 1))):
        window, strides, dilations = (1, 1) + kernel, (1, 1) + stride, (1, 1) + dilation
        expected = lax.reduce_window(jnp.asarray(x), -jnp.inf, lax.max, window, strides, "SAME", window_dilation=dilations)
        np.testing.assert_array_equal(numba_pool.max_pool2d(x, kernel, stride, "same", dilation), np.asarray(expected))
        if dilation == (1, 1):
            sums = lax.reduce_window(jnp.asarray(x), 0.0, lax.add, window, strides, "SAME")
            counts = lax.reduce_window(jnp.ones_like(jnp.asarray(x)), 0.0, lax.add, window, strides, "SAME")
            np.testing.assert_allclose(numba_pool.avg_pool2d(x, kernel, stride, "same"), np.asarray(sums / counts), rtol=1e-5, atol=1e-6)
    assert jax is not None


def test_jax_is_not_needed():
    """numba_pool's 'same' padding imports neither jax nor tensorflow."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, numba_pool; numba_pool.avg_pool1d(np.ones((1, 1, 5)), 2, 2, 'same'); "
        "assert 'jax' not in sys.modules and 'tensorflow' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_torch_modules_take_same_padding_and_gradcheck():
    torch = pytest.importorskip("torch")
    from numba_pool import torch as pool_torch

    x = torch.randn(2, 3, 7, 5, dtype=torch.float64, requires_grad=True)
    positive = (x.detach().abs() + 0.1).requires_grad_()
    for module, argument in (
        (pool_torch.AvgPool2d(3, 2, "same"), x),
        (pool_torch.MaxPool2d((2, 3), 2, "same", dilation=(2, 1)), x),
        (pool_torch.LpPool2d(2.0, 3, 2, padding="same"), positive),
    ):
        assert module(argument).shape == (2, 3, 4, 3)
        assert torch.autograd.gradcheck(module, (argument,))
    expected = tf_avg(x.detach().numpy(), (3, 3), (2, 2))
    np.testing.assert_allclose(pool_torch.AvgPool2d(3, 2, "same")(x).detach().numpy(), expected)
