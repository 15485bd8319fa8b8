"""The test session's faster simulated launches (tests/simulator_blocks.py) keep the simulator's semantics."""

from __future__ import annotations

import os
import signal
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


@cuda.jit
def _record_threads(out, python_threads):
    """Each CUDA thread writes its indices and lane, and the Python thread it ran on."""
    i = cuda.blockIdx.x * cuda.blockDim.x * cuda.blockDim.y + cuda.threadIdx.y * cuda.blockDim.x + cuda.threadIdx.x
    out[i, 0], out[i, 1], out[i, 2], out[i, 3] = cuda.blockIdx.x, cuda.threadIdx.y, cuda.threadIdx.x, cuda.laneid
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
def _count_positive(x, out):
    out[cuda.threadIdx.x] = cuda.syncthreads_count(x[cuda.threadIdx.x] > 0)


@cuda.jit
def _fail_at_thread_five_after_a_barrier(out):
    out[cuda.threadIdx.x] = 1
    cuda.syncthreads()
    if cuda.threadIdx.x == 5:
        raise ValueError("thread five")
    out[cuda.threadIdx.x] = 2


def test_the_session_installed_it():
    assert simulator_blocks.installed()


def test_threads_run_in_the_simulators_order_with_their_own_indices_on_one_python_thread():
    blocks, block = 3, (4, 5)
    out = np.full((blocks * 20, 4), -1, np.int64)
    python_threads = np.zeros(blocks * 20, np.int64)
    _record_threads[blocks, block](out, python_threads)
    expected = [(b, y, x, (y * 4 + x) % 32) for b in range(blocks) for y in range(5) for x in range(4)]
    np.testing.assert_array_equal(out, np.array(expected))
    assert len(set(python_threads)) == 1
    assert id(threading.current_thread()) not in set(python_threads)  # not on the launching thread


def test_a_forked_child_runs_blocks_on_a_runner_of_its_own():
    out, python_threads = np.zeros((4, 4), np.int64), np.zeros(4, np.int64)
    _record_threads[1, 4](out, python_threads)  # the parent's runner is started
    child = os.fork()
    if child == 0:  # the child: exit status 0 when a launch works
        status = 1
        try:
            _record_threads[1, 4](out, python_threads)
            status = 0 if out[3, 2] == 3 else 3
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


def test_syncthreads_count_sees_every_thread():
    x = np.array([1, -1, 2, 0, 5, 3, -2, 1])
    out = np.zeros(8, np.int64)
    _count_positive[1, 8](x, out)
    np.testing.assert_array_equal(out, 5)


def test_an_error_names_the_cuda_thread_that_raised_it_and_ends_the_launch():
    out = cuda.to_device(np.zeros(8, np.int64))
    with pytest.raises(ValueError, match=r"^tid=\[5, 0, 0\] ctaid=\[0, 0, 0\]: thread five$"):
        _fail_at_thread_five_after_a_barrier[1, 8](out)
    np.testing.assert_array_equal(out.copy_to_host()[:6], [2, 2, 2, 2, 2, 1])  # every thread reached the barrier


@cuda.jit(debug=True, opt=False)
def _record_python_thread(python_threads):
    python_threads[cuda.threadIdx.x] = id(threading.current_thread())


def test_a_debug_kernel_keeps_the_simulators_own_threads():
    python_threads = np.zeros(4, np.int64)
    _record_python_thread[1, 4](python_threads)
    assert len(set(python_threads)) == 4

