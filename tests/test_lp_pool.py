"""Lp-norm pooling against the NumPy reference and PyTorch, on every backend; its errors, layer and torch module."""

from __future__ import annotations


import numpy as np
import pytest

import numba_pool
from numba_pool import reference
from cases import backend_case, random_values
from helpers import assert_matches, assert_same_results, op

NORMS = (1.0, 2.0, 3.0, 1.5, np.inf)


def random_lp_case(seed, dims):
    """(rng, case, view, p, x in the reference layout) with zero windows and, for fractional p, x >= 0 mostly."""
    rng, case, view = backend_case(seed, dims, dilation=False)
    p = float(rng.choice(NORMS))
    x = random_values(rng, (case.batch, case.channels) + case.spatial, case.dtype, special=False)
    if p == 1.5 and rng.random() < 0.8:
        x = np.abs(x)
    x[rng.random(x.shape) < 0.3] = 0  # zero windows: their gradient is 0, as PyTorch's
    return rng, case, view, p, x


def arguments(case, p):
    return (p, case.kernel, case.stride, case.ceil_mode)


def keywords(case):
    return dict(padding=case.padding, channels_last=case.channels_last)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", range(8))
def test_forward_and_backward_match_the_reference(backend, dims, seed):
    rng, case, view, p, x = random_lp_case([30 + dims, seed], dims)
    expected = reference.lp_pool(x, p, case.kernel, case.stride, case.ceil_mode, case.padding)
    user_x = case.to_user(x)
    y = backend.get(op("lp_pool", dims)(backend.put(user_x, view), *arguments(case, p), **keywords(case)))
    assert y.dtype == x.dtype
    assert_matches(case.from_user(y), expected, err_msg=f"p={p} {case}")

    grad = rng.standard_normal(expected.shape).astype(case.dtype)
    got = op("lp_pool", dims, "backward")(
        backend.put(case.to_user(grad), view), backend.put(user_x, view), *arguments(case, p), **keywords(case)
    )
    got = backend.get(got)
    assert got.dtype == grad.dtype and got.shape == user_x.shape
    expected_grad = reference.lp_pool_backward(x, grad, p, case.kernel, case.stride, case.ceil_mode, case.padding)
    assert_matches(case.from_user(got), expected_grad, err_msg=f"p={p} {case}")


@pytest.mark.backends("cuda")
@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", range(3))
def test_cuda_equals_the_cpu_bit_for_bit(backend, dims, seed):
    rng, case, view, p, x = random_lp_case([40 + dims, seed], dims)
    user_x = case.to_user(x)
    y = op("lp_pool", dims)(user_x, *arguments(case, p), **keywords(case))
    assert_same_results(backend.get(op("lp_pool", dims)(backend.put(user_x, view), *arguments(case, p), **keywords(case))), y)
    grad = random_values(rng, y.shape, case.dtype, special=False)
    backward = op("lp_pool", dims, "backward")
    expected = backward(grad, user_x, *arguments(case, p), **keywords(case))
    got = backward(backend.put(grad, view), backend.put(user_x, view), *arguments(case, p), **keywords(case))
    assert_same_results(backend.get(got), expected)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", range(16))
def test_forward_and_autograd_match_pytorch(dims, seed):
    torch = pytest.importorskip("torch")
    rng, case, _, p, x = random_lp_case([50 + dims, seed], dims)
    case_x = x.astype(np.float64)
    if any(length < k for length, k in zip(case.spatial, case.kernel)):
        pytest.skip("PyTorch refuses an input smaller than the kernel (lp_pool has no padding)")
    lp = getattr(torch.nn.functional, f"lp_pool{dims}d")
    tensor = torch.tensor(case_x, requires_grad=True)
    kernel = case.kernel[0] if dims == 1 else case.kernel  # PyTorch's lp_pool1d multiplies by kernel_size: an int
    expected = lp(tensor, p, kernel, case.stride, case.ceil_mode)  # PyTorch has no padding
    y = op("lp_pool", dims)(case_x, p, case.kernel, case.stride, case.ceil_mode)
    np.testing.assert_allclose(y, expected.detach().numpy(), rtol=1e-10, atol=1e-12)
    grad = rng.standard_normal(y.shape)
    expected.backward(torch.tensor(grad))
    got = op("lp_pool", dims, "backward")(grad, case_x, p, case.kernel, case.stride, case.ceil_mode)
    np.testing.assert_allclose(got, tensor.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_zero_windows_have_zero_gradient_as_in_pytorch():
    x = np.array([[[0.0, 0.0, 3.0, -4.0]]])
    for p in (1.0, 2.0, np.inf):
        np.testing.assert_array_equal(numba_pool.lp_pool1d_backward(np.ones((1, 1, 2)), x, p, 2)[0, 0, :2], [0.0, 0.0])
    np.testing.assert_allclose(numba_pool.lp_pool1d(x, 2, 2), [[[0.0, 5.0]]])
    np.testing.assert_allclose(numba_pool.lp_pool1d(x, 1, 2), [[[0.0, -1.0]]])  # sum pooling keeps the sign
    np.testing.assert_allclose(numba_pool.lp_pool1d(x, np.inf, 2), [[[0.0, 4.0]]])  # max of |x|
    assert np.isnan(numba_pool.lp_pool1d(x, 3, 2)[0, 0, 1])  # a negative sum of cubes: NaN, as PyTorch


def test_ceil_mode_windows_are_scaled_to_the_kernel_size_as_pytorch_does():
    y = numba_pool.lp_pool1d(np.array([[[1.0, 1.0, 2.0]]]), 1, 2, ceil_mode=True)
    np.testing.assert_allclose(y, [[[2.0, 4.0]]])  # the last window holds one element: 2 * 2 / 1


def test_zero_size_batch_and_unbatched():
    x = np.ones((0, 2, 5, 5), np.float32)
    y = numba_pool.lp_pool2d(x, 2, 2)
    assert y.shape == (0, 2, 2, 2) and y.dtype == np.float32
    assert numba_pool.lp_pool2d_backward(y, x, 2, 2).shape == x.shape
    np.testing.assert_allclose(numba_pool.lp_pool2d(np.ones((2, 4, 4)), 2, 2), np.full((2, 2, 2), 2.0))


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: numba_pool.lp_pool2d(np.ones((1, 1, 4, 4), np.int32), 2, 2), TypeError, ["x", "int32"]),
        (lambda: numba_pool.lp_pool2d(np.ones((1, 1, 4, 4)), 0, 2), ValueError, ["norm_type", "0"]),
        (lambda: numba_pool.lp_pool2d(np.ones((1, 1, 4, 4)), -np.inf, 2), ValueError, ["norm_type", "-inf"]),
        (lambda: numba_pool.lp_pool2d(np.ones((1, 1, 4, 4)), float("nan"), 2), ValueError, ["norm_type", "nan"]),
        (lambda: numba_pool.lp_pool2d(np.ones((1, 1, 4, 4)), "2", 2), TypeError, ["norm_type", "str"]),
        (lambda: numba_pool.lp_pool2d(np.ones((1, 1, 4, 4)), True, 2), TypeError, ["norm_type", "bool"]),
        (lambda: numba_pool.lp_pool2d(np.ones((1, 1, 4, 4)), 2, 2, padding=2), ValueError, ["padding"]),
        (lambda: numba_pool.lp_pool2d_backward(np.ones((1, 1, 3, 3)), np.ones((1, 1, 4, 4)), 2, 2), ValueError, ["grad_output"]),
        (lambda: numba_pool.lp_pool2d_backward(np.ones((1, 1, 2, 2), np.int64), np.ones((1, 1, 4, 4)), 2, 2), TypeError, ["grad_output"]),
    ],
)
def test_bad_arguments_name_what_is_wrong(call, error, words):
    with pytest.raises(error) as raised:
        call()
    message = str(raised.value)
    assert message.startswith("lp_pool2d") and all(word in message for word in words), message


def test_layer_matches_the_functions_and_keeps_padding():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 5, 3))
    layer = numba_pool.LpPool2d(2, 3, 2, True, padding=1, channels_last=True)
    y = layer(x)
    np.testing.assert_array_equal(y, numba_pool.lp_pool2d(x, 2, 3, 2, True, padding=1, channels_last=True))
    grad = rng.standard_normal(y.shape)
    expected = numba_pool.lp_pool2d_backward(grad, x, 2, 3, 2, True, padding=1, channels_last=True)
    np.testing.assert_array_equal(layer.backward(grad), expected)


@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("p", [2.0, 1.5, np.inf])
def test_torch_module_gradcheck_and_gradgradcheck(dims, p):
    torch = pytest.importorskip("torch")
    import numba_pool.torch as nt

    shape = (2, 2) + (7,) * dims
    x = (torch.rand(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(dims)) + 0.1).requires_grad_()
    module = getattr(nt, f"LpPool{dims}d")(p, 3, 2, True, padding=1)
    assert torch.autograd.gradcheck(module, (x,))
    assert torch.autograd.gradgradcheck(module, (x,))
    # Without padding: the same as PyTorch's module.
    ours = getattr(nt, f"LpPool{dims}d")(p, 3, 2, True)(x)
    theirs = getattr(torch.nn, f"LPPool{dims}d")(p, 3, 2, True)(x)
    torch.testing.assert_close(ours, theirs)


def test_torch_module_first_gradient_under_create_graph_equals_the_kernels():
    torch = pytest.importorskip("torch")
    import numba_pool.torch as nt

    x = torch.randn((2, 3, 8, 8), dtype=torch.float64, generator=torch.Generator().manual_seed(1)).requires_grad_()
    for p in (1.0, 2.0, 3.0, np.inf):
        module = nt.LpPool2d(p, 2, 1, padding=1)
        weights = torch.randn(module(x).shape, dtype=torch.float64)
        (plain,) = torch.autograd.grad((module(x) * weights).sum(), x)
        (graph,) = torch.autograd.grad((module(x) * weights).sum(), x, create_graph=True)
        torch.testing.assert_close(graph, plain, equal_nan=True)


@pytest.mark.parametrize("channels_last", [False, True])
def test_dask_equals_numpy(channels_last):
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 9, 8)) if not channels_last else rng.standard_normal((2, 9, 8, 3))
    options = dict(padding=1, channels_last=channels_last)
    expected = numba_pool.lp_pool2d(x, 2, 3, 2, True, **options)
    lazy = numba_pool.lp_pool2d(da.from_array(x, chunks=3), 2, 3, 2, True, **options)
    np.testing.assert_array_equal(lazy.compute(), expected)
    grad = rng.standard_normal(expected.shape)
    lazy_grad = numba_pool.lp_pool2d_backward(da.from_array(grad, chunks=2), da.from_array(x, chunks=3), 2, 3, 2, True, **options)
    np.testing.assert_array_equal(lazy_grad.compute(), numba_pool.lp_pool2d_backward(grad, x, 2, 3, 2, True, **options))


