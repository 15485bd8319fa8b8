"""The average pooling backward kernels (copied rows, the stride-2 interior gather, per-row window columns in
channels-last memory) against the reference, bit for bit across memories and block counts, on many random
configurations."""

from __future__ import annotations

import numpy as np
import pytest

import numba_pool as nb
from numba_pool import _spec, reference
from numba_pool.backends.cpu import _threading
from numba_pool.backends.cpu import avg_pool
from helpers import assert_matches, op


@pytest.fixture(params=["serial", "parallel"])
def threads(request, monkeypatch):
    """Run each test on the serial twins and on the parallel kernels (several blocks of rows)."""
    monkeypatch.setattr(_threading, "SERIAL_BELOW", 1 << 62 if request.param == "serial" else 0)
    return request.param


def random_configuration(rng, dims):
    """Kernels 1-4 with strides 1-3, padding, both rounding modes, divisors; sizes wide enough for a stride-2 interior."""
    kernel = tuple(int(k) for k in rng.integers(1, 5, size=dims))
    stride = tuple(int(s) for s in rng.choice([1, 2, 2, 3], size=dims))
    padding = tuple(int(rng.integers(0, k // 2 + 1)) for k in kernel)
    spatial = tuple(int(rng.integers(k, k + 17)) for k in kernel)
    divisor = int(rng.integers(1, 10)) if rng.random() < 0.2 else None
    return (spatial, kernel, stride, padding, bool(rng.integers(2)), bool(rng.integers(2)), divisor)


def random_values(rng, shape, dtype):
    """Mixed signs, some planes scaled to huge or tiny magnitudes."""
    exponent_range = 30 if dtype == np.float64 else 15
    scale = 10.0 ** rng.integers(-exponent_range, exponent_range + 1, size=shape[:2] + (1,) * (len(shape) - 2))
    return (rng.standard_normal(shape) * scale).astype(dtype)


def gradient_memories(grad_output):
    """(name, grad_output as given, channels_last, back to (N, C, *spatial)): plain, strided and channels-last memories."""
    last = np.ascontiguousarray(np.moveaxis(grad_output, 1, -1))
    spaced = np.zeros(grad_output.shape[:-1] + (2 * grad_output.shape[-1],), grad_output.dtype)
    spaced[..., ::2] = grad_output
    wide = np.zeros(last.shape[:-1] + (2 * last.shape[-1],), grad_output.dtype)
    wide[..., ::2] = last
    yield "channels-first", grad_output, False, lambda a: a
    yield "channels-first, strided", spaced[..., ::2], False, lambda a: a
    yield "channels-last", last, True, lambda a: np.moveaxis(a, -1, 1)
    yield "channels-last memory read as channels-first", np.moveaxis(last, -1, 1), False, lambda a: a
    yield "channels-last, strided channels", wide[..., ::2], True, lambda a: np.moveaxis(a, -1, 1)


def backward_in_every_memory(grad_output, spatial, arguments, expected, dtype):
    """Every memory's gradient, checked against ``expected`` and against the first one bit for bit."""
    dims = len(spatial)
    backward = op("avg_pool", dims, "backward")
    first = None
    for name, grad, last, back in gradient_memories(grad_output):
        shape = (grad.shape[0],) + spatial + (grad.shape[-1],) if last else grad.shape[:2] + spatial
        result = back(backward(grad, shape, *arguments, channels_last=last))
        assert_matches(result, expected, err_msg=name)
        first = result if first is None else first
        np.testing.assert_array_equal(result, first, err_msg=name)


# The parallel kernels in float32 only: their blocking does not depend on the dtype, and each dtype costs
# four parallel compiles of about 5 s on a first run.
@pytest.mark.parametrize("dtype, threads", [(np.float32, "serial"), (np.float64, "serial"), (np.float32, "parallel")],
                         indirect=["threads"])
@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", range(10))
def test_backward_agrees_with_reference_and_across_memories(dims, seed, dtype, threads):
    rng = np.random.default_rng([2024, dims, seed])
    spatial, kernel, stride, padding, ceil_mode, include_pad, divisor = random_configuration(rng, dims)
    if not reference.is_valid(spatial, kernel, stride, padding, (1,) * dims, ceil_mode):
        pytest.skip("window larger than the padded input")
    arguments = (kernel, stride, padding, ceil_mode, include_pad, divisor)
    batch, channels = int(rng.integers(1, 3)), int(rng.choice([1, 3, 8, 13]))
    out_spatial = reference.avg_pool(np.zeros((1, 1) + spatial), *arguments).shape[2:]
    grad_output = random_values(rng, (batch, channels) + out_spatial, dtype)
    expected = reference.avg_pool_backward(grad_output, spatial, *arguments)
    backward_in_every_memory(grad_output, spatial, arguments, expected, dtype)


@pytest.mark.parametrize("kernel, stride, padding", [(2, 2, 0), (3, 2, 0), (3, 2, 1), (4, 2, 1), (4, 2, 2), (1, 2, 0),
                                                     (2, 1, 1), (3, 3, 1), (4, 3, 0)])
@pytest.mark.parametrize("width", [4, 5, 6, 7, 8, 11, 28])
def test_every_border_next_to_the_stride_two_interior(kernel, stride, padding, width, threads):
    rng = np.random.default_rng([kernel, stride, padding, width])
    for ceil_mode in (False, True):
        if not reference.is_valid((width + 1, width), (kernel,) * 2, (stride,) * 2, (padding,) * 2, (1, 1), ceil_mode):
            continue
        for include_pad in (False, True):
            arguments = ((kernel,) * 2, (stride,) * 2, (padding,) * 2, ceil_mode, include_pad, None)
            out_spatial = reference.avg_pool(np.zeros((1, 1, width + 1, width)), *arguments).shape[2:]
            grad_output = rng.standard_normal((2, 5) + out_spatial).astype(np.float32)  # the kernels of the test above
            expected = reference.avg_pool_backward(grad_output.astype(np.float64), (width + 1, width), *arguments)
            backward_in_every_memory(grad_output, (width + 1, width), arguments, expected, np.float32)


def covers_of(width, kernel, stride, padding, ceil_mode):
    plan = _spec.plan_window("avg_pool1d", 1, (1, 1, width), kernel, stride, padding, 1, ceil_mode, False)
    return plan.covering_windows[2]


@pytest.mark.parametrize("kernel", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("padding", [0, 1, 2])
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_stride_two_run_holds_only_positions_of_its_pattern(kernel, stride, padding, ceil_mode):
    """The run the fast gather uses: every pair in it has the claimed windows, and stride 2 with
    kernels 2-4 finds the whole interior (so the tests above reach the fast gather)."""
    for width in range(max(kernel, 2 * padding), 40):
        if not reference.is_valid((width,), (kernel,), (stride,), (padding,), (1,), ceil_mode):
            continue
        covers = covers_of(width, kernel, stride, padding, ceil_mode)
        w0, q0, pairs, even_count, odd_count = avg_pool._stride_two_run(covers)
        for i in range(pairs):
            for w, count in ((w0 + 2 * i, even_count), (w0 + 2 * i + 1, odd_count)):
                assert covers[1, w] == q0 + i + 1 and covers[1, w] - covers[0, w] == count
        if stride == 2 and 2 <= kernel <= 4 and width >= 12:
            interior = [w for w in range(width) if covers[0, w] > 0 and covers[1, w] < covers[1, -1]]
            assert w0 <= interior[0] + 1 and w0 + 2 * pairs >= interior[-1] - 1


@pytest.mark.parametrize("blocks", [1, 2, 3, 7, 40])
def test_channels_first_result_does_not_depend_on_the_blocks(blocks):
    """Copied rows come only from rows of the same block: any split gives the same bits."""
    rng = np.random.default_rng(blocks)
    plan = _spec.plan_window("avg_pool2d", 2, (3, 2, 13, 12), 3, 2, 1, 1, True, False)
    scales = _spec.avg_scales(plan, False, None)
    # float32: the parallel kernel's signature of the random tests above (a float64 one is another compile)
    grad_output = rng.standard_normal((3, 2, 1) + plan.output_spatial).astype(np.float32)
    expected = reference.avg_pool_backward(grad_output[:, :, 0], (13, 12), (3, 3), (2, 2), (1, 1), True, False, None)
    grad_input = np.full((3, 2, 1, 13, 12), np.nan, np.float32)
    avg_pool._backward_channels_first(grad_output, plan.covering_windows, scales, blocks, grad_input)
    assert_matches(grad_input[:, :, 0], expected)
    one_block = np.full_like(grad_input, np.nan)
    avg_pool._backward_channels_first(grad_output, plan.covering_windows, scales, 1, one_block)
    np.testing.assert_array_equal(grad_input, one_block)


@pytest.mark.parametrize("channels_last", [False, True])
def test_nan_and_inf_gradients_reach_every_covered_position(channels_last, threads):
    grad_output = np.ones((1, 3, 6, 6), np.float32)
    grad_output[0, 1, 2, 3] = np.nan
    grad_output[0, 2, 4, 1] = np.inf
    arguments = ((3, 3), (2, 2), (1, 1), False, True, None)
    expected = reference.avg_pool_backward(grad_output, (12, 12), *arguments)
    grad = np.ascontiguousarray(np.moveaxis(grad_output, 1, -1)) if channels_last else grad_output
    shape = (1, 12, 12, 3) if channels_last else (1, 3, 12, 12)
    result = nb.avg_pool2d_backward(grad, shape, *arguments, channels_last=channels_last)
    result = np.moveaxis(result, -1, 1) if channels_last else result
    np.testing.assert_array_equal(np.isnan(result), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(result), np.isinf(expected))
    np.testing.assert_allclose(result, expected, rtol=2e-6)


@pytest.mark.parametrize("channels_last", [False, True])
def test_zero_size_batch(channels_last, threads):
    shape = (0, 8, 8, 3) if channels_last else (0, 3, 8, 8)
    grad = np.zeros((0, 4, 4, 3) if channels_last else (0, 3, 4, 4), np.float32)
    assert nb.avg_pool2d_backward(grad, shape, 2, channels_last=channels_last).shape == shape
