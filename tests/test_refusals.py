"""Inputs that used to slip through the checks: huge parameters, aliased out= arrays, masked arrays,
huge seeds, non-bool modes, gradients of the wrong shape. Each is refused cleanly, or (an out= that
only interleaves with x) accepted."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time

import numpy as np
import pytest

import numba_pool as nb
from numba_pool import _spec

SIGNAL = np.ones((1, 1, 4), np.float32)


@pytest.mark.parametrize(
    "call",
    [
        lambda: nb.max_pool1d(SIGNAL, 2**70, padding=2**69),
        lambda: nb.max_pool1d(SIGNAL, 2, stride=2**63),
        lambda: nb.avg_pool1d(SIGNAL, 2, padding=2**64),
        lambda: nb.max_pool1d(SIGNAL, 2, dilation=2**63),
        lambda: nb.avg_pool1d(SIGNAL, 2, divisor_override=2**70),
        lambda: nb.avg_pool1d(SIGNAL, 2, divisor_override=-(2**70)),
        lambda: nb.adaptive_avg_pool1d(SIGNAL, 2**70),
        lambda: nb.max_pool1d_backward(SIGNAL[..., :2], np.zeros((1, 1, 2), np.int64), (1, 1, 2**70)),
        lambda: nb.stochastic_pool1d(SIGNAL, 2, seed=2**64),
    ],
)
def test_huge_parameters_are_value_errors(call):
    with pytest.raises(ValueError, match="2\\*\\*6[24]"):
        call()


def test_argument_checks_take_constant_time_in_the_window_size():
    start = time.perf_counter()
    plan = _spec.plan_window("max_pool1d", 1, (1, 1, 4), 10**9, None, 10**9 // 2, 1, False, False)
    assert plan.output_spatial == (1,)
    plan = _spec.plan_window("max_pool1d", 1, (1, 1, 4), 2**61, None, 2**60, 1, True, False)
    assert plan.output_spatial == (1,)
    # a generous bound: the old per-tap Python loop took about 45 s for the first and never returned for the second
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("pool", [nb.max_pool1d, nb.avg_pool1d, nb.stochastic_pool1d])
def test_windows_much_larger_than_the_input_pool_the_input(pool):
    x = np.arange(4, dtype=np.float64).reshape(1, 1, 4) + 1
    expected = {nb.max_pool1d: 4.0, nb.avg_pool1d: 10.0 / 10**6, nb.stochastic_pool1d: 30.0 / 10.0}[pool]
    options = {"training": False} if pool is nb.stochastic_pool1d else {}
    assert pool(x, 10**6, padding=10**6 // 2, **options)[0, 0, 0] == pytest.approx(expected)


def test_padding_only_windows_are_found_exactly():
    """The constant-time check refuses exactly the plans in which some window's taps all miss the input."""
    for length, kernel, stride, dilation, ceil_mode in itertools.product(range(1, 7), range(1, 7), range(1, 4), range(1, 5), (False, True)):
        for padding in range(kernel // 2 + 1):
            count = _spec.pooled_length(length, kernel, stride, padding, dilation, ceil_mode)
            if count < 1:
                continue
            starts = [o * stride - padding for o in range(count)]
            padding_only = any(not any(0 <= a + i * dilation < length for i in range(kernel)) for a in starts)
            try:
                _spec.plan_window("max_pool1d", 1, (1, 1, length), kernel, stride, padding, dilation, ceil_mode, False)
                refused = False
            except ValueError as error:
                assert "holds only padding" in str(error)
                refused = True
            assert refused == padding_only, (length, kernel, stride, padding, dilation, ceil_mode)


def test_out_with_repeated_elements_is_refused():
    x = np.random.default_rng(0).random((1, 1, 8, 8)).astype(np.float32)
    broadcast = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), (1, 1, 4, 4), (0, 0, 0, 0))
    with pytest.raises(ValueError, match="out has elements that share memory"):
        nb.max_pool2d(x, 2, out=broadcast)
    rows_alias = np.lib.stride_tricks.as_strided(np.zeros(8, np.float32), (1, 1, 4, 4), (64, 64, 4, 4))
    with pytest.raises(ValueError, match="out has elements that share memory"):
        nb.avg_pool2d(x, 2, out=rows_alias)


def test_out_interleaved_with_x_but_not_overlapping_is_accepted():
    values = np.random.default_rng(1).random((1, 1, 8, 8)).astype(np.float32)
    buffer = np.zeros(2 * values.size, np.float32)
    x = buffer[0::2].reshape(values.shape)
    x[...] = values
    out = buffer[1::2][:16].reshape(1, 1, 4, 4)
    window = dict(kernel_size=2, stride=2, padding=0, dilation=2, ceil_mode=True)  # 4 x 4 outputs, separable kernel
    assert nb.max_pool2d(x, **window, out=out) is out
    np.testing.assert_array_equal(out, nb.max_pool2d(values, **window))
    np.testing.assert_array_equal(x, values)  # x untouched
    with pytest.raises(ValueError, match="out must not share memory with x"):
        nb.max_pool2d(x, **window, out=buffer[0::2][:16].reshape(1, 1, 4, 4))


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix
def test_masked_arrays_and_matrices_are_refused():
    masked = np.ma.masked_array(np.ones((1, 1, 4, 4)), mask=np.eye(4, dtype=bool)[None, None])
    for _ in range(2):  # the second time after a plain call has compiled the kernel
        with pytest.raises(TypeError, match="x is a MaskedArray"):
            nb.max_pool2d(masked, 2)
        nb.max_pool2d(np.ones((1, 1, 4, 4)), 2)
    with pytest.raises(TypeError, match="x is a matrix"):
        nb.global_avg_pool1d(np.matrix(np.ones((2, 3))))
    with pytest.raises(TypeError, match="grad_output is a MaskedArray"):
        nb.global_avg_pool2d_backward(np.ma.masked_array(np.ones((1, 1))), (1, 1, 2, 2))
    with pytest.raises(TypeError, match="out must be a plain NumPy array"):
        nb.avg_pool2d(np.ones((1, 1, 4, 4)), 2, out=np.ma.masked_array(np.ones((1, 1, 2, 2))))


def test_other_ndarray_subclasses_are_read_as_plain_arrays(tmp_path):
    data = np.random.default_rng(2).random((1, 2, 6, 6))
    mapped = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=data.dtype, shape=data.shape)
    mapped[...] = data
    np.testing.assert_array_equal(nb.avg_pool2d(mapped, 2), nb.avg_pool2d(data, 2))


def test_seeds_must_fit_in_64_bits():
    x = np.random.default_rng(3).random((1, 1, 8))
    largest = nb.stochastic_pool1d(x, 2, seed=2**64 - 1, return_indices=True)[1]
    assert largest.shape == (1, 1, 4)
    with pytest.raises(ValueError, match="seed must be None, an int from 0 to 2\\*\\*64 - 1"):
        nb.stochastic_pool1d(x, 2, seed=2**64)
    with pytest.raises(ValueError, match="seed must be"):
        nb.stochastic_pool1d(x, 2, seed=-1)


@pytest.mark.parametrize("mode", ["no", 0, 1, None])
def test_layer_modes_must_be_bools(mode):
    layer = nb.StochasticPool2d(2)
    with pytest.raises(TypeError, match="StochasticPool2d.train: mode must be True or False"):
        layer.train(mode)
    assert layer.training is True


@pytest.mark.parametrize(
    "layer, x",
    [
        (nb.AdaptiveAvgPool2d(3), np.ones((1, 2, 6, 6))),
        (nb.AdaptiveMaxPool2d(3), np.ones((1, 2, 6, 6))),
        (nb.MaxPool2d(2), np.ones((1, 2, 6, 6))),
        (nb.AvgPool1d(2), np.ones((1, 2, 6))),
        (nb.GlobalAvgPool2d(), np.ones((1, 2, 6, 6))),
        (nb.StochasticPool2d(2), np.ones((1, 2, 6, 6))),
        (nb.StochasticPool2d(2).eval(), np.ones((1, 2, 6, 6))),
    ],
)
def test_layer_backward_needs_the_forward_output_shape(layer, x):
    y = layer(x)
    wrong = np.ones(y.shape[:-1] + (y.shape[-1] + 1,))
    with pytest.raises(ValueError, match=f"{type(layer).__name__}.backward: grad_output must have the shape"):
        layer.backward(wrong)
    assert layer.backward(np.ones_like(y)).shape == x.shape


def test_kernels_with_windows_far_larger_than_the_input_finish():
    """Kernel loops run over the taps that meet the input, never over the whole (here 2**40) window.

    In a subprocess with a timeout, so that a regression fails instead of hanging the suite.
    """
    script = """
import numpy as np, numba_pool as nb
x = np.arange(1.0, 5.0).reshape(1, 1, 4)
nhwc = np.ones((1, 4, 4, 3))
k, p = 2**40, 2**39
assert nb.max_pool1d(x, k, padding=p, return_indices=True)[0][0, 0, 0] == 4.0
assert nb.avg_pool1d(x, k, padding=p)[0, 0, 0] == 10.0 / k
assert nb.stochastic_pool1d(x, k, padding=p, training=False)[0, 0, 0] == 3.0
assert (nb.max_pool2d(nhwc, k, padding=p, channels_last=True) == 1.0).all()
assert (nb.avg_pool2d(nhwc, k, padding=p, channels_last=True) == 16.0 / k**2).all()
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=600)
