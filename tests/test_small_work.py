"""Small calls run each kernel's serial twin (no thread launch); larger ones the parallel kernel.

Most arrays in the other tests are below ``SERIAL_BELOW``, so they test the
serial twins; here every op runs both ways on the same arrays, and the results
must be identical to the last bit (each prange iteration owns its part of the
output, so the thread count cannot change a result).
"""

from __future__ import annotations

import numpy as np
import pytest

import numba_pool
from numba_pool.backends.cpu import _threading


@pytest.fixture
def serial_below(monkeypatch):
    def set_threshold(elements: int) -> None:
        monkeypatch.setattr(_threading, "SERIAL_BELOW", elements)

    return set_threshold


def _inputs(seed: int, channels_last: bool):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 5, 9, 11)).astype(np.float32)
    x[0, 1, 2, 3] = np.nan
    x[1, 2] = np.round(x[1, 2])  # ties
    if channels_last:
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    return x


def _strided_ones(like):
    """Ones shaped like ``like``, every other element of a buffer twice as wide along the innermost axis of
    ``like``'s memory (its channels when they are innermost)."""
    if like.strides[1] == like.itemsize:  # channels innermost
        n, c, h, w = like.shape
        return np.ones((n, h, w, 2 * c), like.dtype)[..., ::2].transpose(0, 3, 1, 2)
    return np.ones(like.shape[:-1] + (2 * like.shape[-1],), like.dtype)[..., ::2]


def _every_op(x, channels_last: bool):
    """The outputs of every CPU op family on ``x`` (forward and backward). In channels-last memory, only
    of the families with channels-last kernels: the others would run their one kernel's "A" (strided)
    version, whose serial and parallel forms divide the work as the "C" version tested in
    channels-first memory does, at the cost of another parallel compile each on a first run."""
    results = {}
    y, indices = numba_pool.max_pool2d(x, 3, 2, 1, return_indices=True)
    results["max"] = (y, indices, numba_pool.max_pool2d_backward(np.ones_like(y), indices, x.shape))
    results["max_dilated"] = numba_pool.max_pool2d(x, 2, 1, 0, 2, ceil_mode=True)
    results["max_direct"] = numba_pool.max_pool2d(x, 2, 2)  # small windows, values only: the direct kernel
    # strided gradients and inputs: the routed backward and global pooling kernels for views
    results["max_strided_gradient"] = numba_pool.max_pool2d_backward(_strided_ones(y), indices, x.shape)
    results["global_avg_strided"] = numba_pool.global_avg_pool2d(x[..., ::2])
    a = numba_pool.avg_pool2d(x, 3, 2, 1, ceil_mode=True)
    results["avg"] = (a, numba_pool.avg_pool2d_backward(np.ones_like(a), x.shape, 3, 2, 1, ceil_mode=True))
    s, picked = numba_pool.stochastic_pool2d(np.abs(x), 2, seed=7, return_indices=True)
    results["stochastic"] = (s, picked, numba_pool.stochastic_pool2d(x, 3, 2, 1, training=False))
    g = numba_pool.global_avg_pool2d(x)
    results["global_avg"] = (g, numba_pool.global_avg_pool2d_backward(np.ones_like(g), x.shape))
    results["global_max"] = numba_pool.global_max_pool2d(x, return_indices=True)
    if channels_last:
        return results
    results["stochastic_inference_backward"] = numba_pool.stochastic_pool2d_inference_backward(
        np.ones((2, 5, 5, 6), np.float32), x, 3, 2, 1
    )
    results["adaptive"] = (
        numba_pool.adaptive_avg_pool2d(x, (4, 3)),
        numba_pool.adaptive_max_pool2d(x, (4, 3), return_indices=True),
    )
    results["unpool"] = numba_pool.max_unpool2d(y, indices, 3, 2, 1, output_size=x.shape[-2:])
    p = numba_pool.lp_pool2d(np.abs(x), 2, 3, 2)
    results["lp"] = (p, numba_pool.lp_pool2d_backward(np.ones_like(p), np.abs(x), 2, 3, 2))
    f, chosen = numba_pool.fractional_max_pool2d(x, 2, output_size=(6, 7), seed=3, return_indices=True)
    results["fractional_max"] = (f, chosen, numba_pool.fractional_max_pool2d_backward(np.ones_like(f), chosen, x.shape))
    v = numba_pool.fractional_avg_pool2d(x, output_size=(6, 7), overlapping=True, seed=3)
    results["fractional_avg"] = (v, numba_pool.fractional_avg_pool2d_backward(np.ones_like(v), x.shape, 3, overlapping=True))
    return results


def _assert_identical(left, right, where: str) -> None:
    if isinstance(left, (tuple, list)):
        for i, (a, b) in enumerate(zip(left, right, strict=True)):
            _assert_identical(a, b, f"{where}[{i}]")
        return
    assert left.dtype == right.dtype and left.shape == right.shape, where
    assert np.array_equal(left, right, equal_nan=True), where


@pytest.mark.parametrize("channels_last", [False, True])
def test_serial_twins_and_parallel_kernels_agree(serial_below, channels_last):
    x = _inputs(0, channels_last)
    serial_below(1 << 40)
    serial = _every_op(x, channels_last)
    serial_below(0)
    parallel = _every_op(x, channels_last)
    for name in serial:
        _assert_identical(serial[name], parallel[name], name)


def test_work_below_the_threshold_runs_the_serial_twin(serial_below, monkeypatch):
    calls = []

    def kernel(x, out):
        calls.append("parallel")

    monkeypatch.setattr(_threading, "_small_work_twin", lambda kernel: lambda *args: calls.append("serial"))
    wrapped = _threading.thread_and_fork_safe(kernel)
    x, out = np.ones(10), np.empty(10)
    serial_below(11)
    wrapped(x, out)
    serial_below(10)
    wrapped(x, out)
    assert calls == ["serial", "parallel"]


def test_the_serial_copy_of_a_python_wrapper_calls_serial_twins():
    """A kernel that is a Python function launching compiled kernels gets a copy whose callees are serial."""
    from numba_pool.backends.cpu import max_pool

    copy = _threading._small_work_twin(max_pool.max_pool_forward)
    parallel_names = [name for name, value in vars(max_pool).items() if _threading._is_parallel_kernel(value)]
    assert parallel_names, "max_pool has parallel kernels"
    for name in parallel_names:
        assert not _threading._is_parallel_kernel(copy.__globals__[name]), name
        assert _threading._is_parallel_kernel(getattr(max_pool, name)), f"the module keeps its parallel {name}"


# Every dtype on the serial twin; the parallel kernel (a first-run compile of about 2 s per dtype) on the
# dtype of the indices the ops make and on the unsigned one Numba types differently.
@pytest.mark.parametrize(
    "dtype, threshold",
    [(dtype, 1 << 40) for dtype in (np.int8, np.uint16, np.int32, np.int64, np.uint64)] + [(np.int64, 0), (np.uint64, 0)],
)
def test_index_range_finds_the_extremes_anywhere(serial_below, threshold, dtype):
    serial_below(threshold)
    rng = np.random.default_rng(3)
    for size in (1, 2, 63, 64, 65, 1000, 20_001):
        values = rng.integers(10, 100, size).astype(dtype)
        low_at, high_at = rng.integers(0, size, 2)
        values[low_at], values[high_at] = 3, 120
        if size > 1 and low_at == high_at:
            continue
        expected = (int(values.min()), int(values.max()))
        assert numba_pool.backends.cpu.index_range(values, None) == expected
        assert numba_pool.backends.cpu.index_range(values[::-1], None) == expected  # a reversed view
    grid = rng.integers(0, 50, (3, 4, 5, 6)).astype(dtype)
    grid[2, 0, 4, 1] = 77
    channels_last = grid.transpose(0, 2, 3, 1)  # dense in another axis order: read where it lies
    assert numba_pool.backends.cpu.index_range(channels_last, None) == (int(grid.min()), 77)


def test_a_wrapper_calling_another_wrapper_stays_serial():
    """Channels-last stochastic pooling of windows too large for lanes calls the channels-first wrapper:
    in the serial copy that wrapper is serial too, so a small call never starts the thread pool."""
    import subprocess
    import sys
    import textwrap

    from numba_pool.backends.cpu import stochastic_pool

    namespace = _threading._serial_namespace(stochastic_pool.__name__)
    assert namespace["stochastic_pool_forward"].__globals__ is namespace
    script = textwrap.dedent(
        """
        import numpy as np, numba_pool as nb
        from numba_pool.backends.cpu import _threading
        from numba_pool.backends.cpu.stochastic_pool import LARGEST_LANE_WINDOW
        side = 40
        assert side * side > LARGEST_LANE_WINDOW
        x = np.random.default_rng(0).random((1, side, side, 2)).astype(np.float32)
        nb.stochastic_pool2d(x, side, side, channels_last=True, seed=0)
        assert _threading.active_layer() is None, _threading.active_layer()
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr


def test_backward_of_a_small_gradient_into_a_large_input_runs_in_parallel(serial_below, monkeypatch):
    """The decision counts the largest array: a (1, 64) gradient filling a large input is large work."""
    calls = []
    monkeypatch.setattr(_threading, "_small_work_twin", lambda kernel: lambda *args: calls.append("serial"))
    wrapped = _threading.thread_and_fork_safe(lambda grad, grad_input: calls.append("parallel"))
    serial_below(1000)
    wrapped(np.ones(10), np.empty(5000))
    wrapped(np.ones(10), np.empty(500))
    assert calls == ["parallel", "serial"]
