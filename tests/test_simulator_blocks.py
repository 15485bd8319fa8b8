"""The test session's faster simulated launches (tests/simulator_blocks.py) keep the simulator's semantics."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("numba_cuda", reason="the CUDA backend needs numba-cuda (pip install -e '.[test]' installs it)")
pytest.importorskip("greenlet", reason="the helper needs greenlet (pip install -e '.[test]' installs it)")
from numba import cuda  # noqa: E402
from numba.cuda.core import config  # noqa: E402

if not config.ENABLE_CUDASIM:
    pytest.skip("a real GPU runs these kernels: the helper is installed under the simulator only", allow_module_level=True)

import simulator_blocks  # noqa: E402

import numba_pool  # noqa: E402


@cuda.jit
def _record_threads(out, python_threads):
    """Each CUDA thread writes its indices and lane, and the Python thread it ran on."""
    t = cuda.threadIdx
    i = cuda.blockIdx.x * cuda.blockDim.x * cuda.blockDim.y * cuda.blockDim.z
    i += (t.z * cuda.blockDim.y + t.y) * cuda.blockDim.x + t.x
    out[i, 0], out[i, 1], out[i, 2], out[i, 3], out[i, 4] = cuda.blockIdx.x, t.z, t.y, t.x, cuda.laneid
    python_threads[i] = id(threading.current_thread())


@cuda.jit(device=True)
def _wait_for_the_block():
    cuda.syncthreads()


@cuda.jit
def _tree_sum(x, out, active):
    """A block reduction: each round reads what other threads wrote before the barrier. Threads at
    or past ``active`` leave at once, and must not hold up the barriers of the others."""
    t = cuda.threadIdx.x
    if t >= active:
        return
    shared = cuda.shared.array(16, np.float64)
    shared[t] = x[t]
    _wait_for_the_block()
    step = 8
    while step > 0:
        if t < step and t + step < active:
            shared[t] += shared[t + step]
        _wait_for_the_block()
        step //= 2
    out[t] = shared[0]


@cuda.jit
def _votes(x, out):
    positive = x[cuda.threadIdx.x] > 0
    out[cuda.threadIdx.x, 0] = cuda.syncthreads_count(positive)
    out[cuda.threadIdx.x, 1] = cuda.syncthreads_and(positive)
    out[cuda.threadIdx.x, 2] = cuda.syncthreads_or(positive)


@cuda.jit
def _fail_at_thread_five_after_a_barrier(out):
    out[cuda.blockIdx.x, cuda.threadIdx.x] = 1
    cuda.syncthreads()
    if cuda.blockIdx.x == 1 and cuda.threadIdx.x == 5:
        raise ValueError("thread five")
    out[cuda.blockIdx.x, cuda.threadIdx.x] = 2


class _NeedsTwoArguments(Exception):
    def __init__(self, first, second):
        super().__init__(f"{first} and {second}")


@cuda.jit
def _fail_with_an_exception_of_two_arguments(out):
    if cuda.threadIdx.x == 2:
        raise _NeedsTwoArguments("one", "two")


def test_the_session_installed_it():
    assert simulator_blocks.installed()


def test_threads_see_their_own_indices_and_lanes_on_one_python_thread():
    blocks, block = 3, (4, 3, 3)  # 36 threads: lanes wrap at 32
    out = np.full((blocks * 36, 5), -1, np.int64)
    python_threads = np.zeros(blocks * 36, np.int64)
    _record_threads[blocks, block](out, python_threads)
    expected = [
        (b, z, y, x, (x + 4 * (y + 3 * z)) % 32) for b in range(blocks) for z in range(3) for y in range(3) for x in range(4)
    ]
    np.testing.assert_array_equal(out, np.array(expected))
    assert len(set(python_threads)) == 1
    assert id(threading.current_thread()) not in set(python_threads)  # not on the launching thread


def test_a_forked_child_runs_blocks_on_a_runner_of_its_own():
    out, python_threads = np.zeros((4, 5), np.int64), np.zeros(4, np.int64)
    _record_threads[1, 4](out, python_threads)  # the parent's runner is started
    child = os.fork()
    if child == 0:  # the child: exit status 0 when a launch works
        status = 1
        try:
            _record_threads[1, 4](out, python_threads)
            status = 0 if out[3, 3] == 3 else 3
        finally:
            os._exit(status)
    deadline = time.monotonic() + 60
    while (waited := os.waitpid(child, os.WNOHANG)) == (0, 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    if waited == (0, 0):
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        pytest.fail("a launch in a forked child hung")
    assert os.WIFEXITED(waited[1]) and os.WEXITSTATUS(waited[1]) == 0, f"child: wait status {waited[1]}"


@pytest.mark.parametrize("active", [16, 11, 1])
def test_a_barrier_waits_for_every_thread_still_running(active):
    x = np.arange(1.0, 17.0)
    out = np.zeros(16)
    _tree_sum[1, 16](x, out, active)
    np.testing.assert_array_equal(out[:active], x[:active].sum())
    np.testing.assert_array_equal(out[active:], 0)


@pytest.mark.parametrize("x, votes", [([1, -1, 2, 0, 5, 3, -2, 1], (5, 0, 1)), ([1] * 8, (8, 1, 1)), ([0] * 8, (0, 0, 0))])
def test_barriers_with_a_vote_see_every_thread(x, votes):
    out = np.zeros((8, 3), np.int64)
    _votes[1, 8](np.array(x), out)
    np.testing.assert_array_equal(out, np.tile(votes, (8, 1)))


def test_an_error_names_the_cuda_thread_that_raised_it_and_ends_the_launch():
    out = cuda.to_device(np.zeros((2, 8), np.int64))
    with pytest.raises(ValueError, match=r"^tid=\[5, 0, 0\] ctaid=\[1, 0, 0\]: thread five$"):
        _fail_at_thread_five_after_a_barrier[2, 8](out)
    np.testing.assert_array_equal(out.copy_to_host()[0], 2)  # block 0 ran to its end
    assert (out.copy_to_host()[1] >= 1).all()  # every thread of block 1 reached the barrier


def test_an_exception_that_takes_other_arguments_is_raised_with_a_note():
    with pytest.raises(_NeedsTwoArguments, match="one and two") as raised:
        _fail_with_an_exception_of_two_arguments[1, 4](np.zeros(4))
    assert raised.value.__notes__ == ["tid=[2, 0, 0] ctaid=[0, 0, 0]"]


def test_our_kernels_give_the_stock_simulators_results(monkeypatch):
    """Per-element kernels, block reductions with barriers (128 threads, ties, NaN) and the stochastic
    kernels' per-element random draws: the helper and the simulator's own threads agree bit for bit."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 2, 12, 11)).astype(np.float32)  # planes of 132: 128-thread blocks
    x[0, 0, :, 4:] = 7  # ties
    x[0, 1, 5:] = np.nan

    def results():
        device = cuda.to_device(x)
        pooled, indices = numba_pool.max_pool2d(device, 3, 2, 1, return_indices=True)
        grad = cuda.to_device(np.ones(pooled.shape, np.float32))
        return [
            pooled, indices, numba_pool.max_pool2d_backward(grad, indices, x.shape),
            *numba_pool.global_max_pool2d(device, return_indices=True), numba_pool.global_avg_pool2d(device),
            numba_pool.avg_pool2d_backward(grad, x.shape, 3, 2, 1),
            numba_pool.stochastic_pool2d(cuda.to_device(np.abs(np.nan_to_num(x))), 2, seed=4),
        ]

    ours = [result.copy_to_host() for result in results()]
    monkeypatch.setattr(simulator_blocks._simulator.BlockManager, "run", simulator_blocks._simulators_own_run)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)  # the stock simulator polls its threads: hand over faster than every 5 ms
    try:
        stock = [result.copy_to_host() for result in results()]
    finally:
        sys.setswitchinterval(interval)
    for got, expected in zip(ours, stock, strict=True):
        np.testing.assert_array_equal(got, expected)


@cuda.jit(debug=True, opt=False)
def _record_python_thread(python_threads):
    python_threads[cuda.threadIdx.x] = id(threading.current_thread())


def test_a_debug_kernel_keeps_the_simulators_own_threads():
    python_threads = np.zeros(4, np.int64)
    _record_python_thread[1, 4](python_threads)
    assert len(set(python_threads)) == 4

