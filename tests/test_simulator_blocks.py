"""The test session's faster simulated launches (tests/simulator_blocks.py) keep the simulator's results."""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("numba_cuda", reason="the CUDA backend needs numba-cuda (pip install -e '.[test]' installs it)")
from numba import cuda  # noqa: E402
from numba.cuda.core import config  # noqa: E402

if not config.ENABLE_CUDASIM:
    pytest.skip("a real GPU runs these kernels: the helper is installed under the simulator only", allow_module_level=True)

import simulator_blocks  # noqa: E402

from numba_pool.backends.cuda import global_pool, max_pool  # noqa: E402


@cuda.jit
def _record_threads(out, python_threads):
    """Each CUDA thread writes its indices, lane and Python thread."""
    i = cuda.blockIdx.x * cuda.blockDim.x * cuda.blockDim.y + cuda.threadIdx.y * cuda.blockDim.x + cuda.threadIdx.x
    out[i, 0], out[i, 1], out[i, 2], out[i, 3] = cuda.blockIdx.x, cuda.threadIdx.y, cuda.threadIdx.x, cuda.laneid
    python_threads[i] = id(threading.current_thread())


@cuda.jit(device=True)
def _wait_for_the_block():
    cuda.syncthreads()


@cuda.jit
def _reverse_in_shared_memory(x, out, python_threads):
    """Needs its barrier: each thread reads the element another thread wrote."""
    shared = cuda.shared.array(8, np.float64)
    t = cuda.threadIdx.x
    shared[t] = x[t]
    _wait_for_the_block()
    out[t] = shared[cuda.blockDim.x - 1 - t]
    python_threads[t] = id(threading.current_thread())


@cuda.jit
def _fail_at_thread_five(out):
    if cuda.threadIdx.x == 5:
        raise ValueError("thread five")
    out[cuda.threadIdx.x] = 1


def test_the_session_installed_it():
    assert simulator_blocks.installed()


def test_barriers_are_found_through_device_functions_and_closures():
    assert simulator_blocks.has_barrier(_reverse_in_shared_memory.fn)  # syncthreads in a device function
    assert simulator_blocks.has_barrier(global_pool._block_means(np.dtype(np.float32)).fn)  # a closure
    assert not simulator_blocks.has_barrier(_record_threads.fn)
    assert not simulator_blocks.has_barrier(max_pool._max_forward.fn)


def test_a_block_without_barriers_runs_its_threads_in_order_in_one_python_thread():
    blocks, block = 3, (4, 5)
    out = np.full((blocks * 20, 4), -1, np.int64)
    threads = np.zeros(blocks * 20, np.int64)
    _record_threads[blocks, block](out, threads)
    expected = [(b, y, x, (y * 4 + x) % 32) for b in range(blocks) for y in range(5) for x in range(4)]
    np.testing.assert_array_equal(out, np.array(expected))
    per_block = threads.reshape(blocks, 20)
    assert all(len(set(row)) == 1 for row in per_block)
    assert id(threading.current_thread()) not in set(threads)  # not on the launching thread


def test_a_block_with_a_barrier_keeps_a_python_thread_per_cuda_thread():
    x = np.arange(8, dtype=np.float64)
    out = np.zeros(8)
    threads = np.zeros(8, np.int64)
    _reverse_in_shared_memory[1, 8](x, out, threads)
    np.testing.assert_array_equal(out, x[::-1])
    assert len(set(threads)) == 8


def test_an_error_names_the_cuda_thread_that_raised_it():
    out = cuda.to_device(np.zeros(8, np.int64))
    with pytest.raises(ValueError, match=r"tid=\[5, 0, 0\] ctaid=\[0, 0, 0\]: thread five"):
        _fail_at_thread_five[1, 8](out)
    np.testing.assert_array_equal(out.copy_to_host()[:6], [1, 1, 1, 1, 1, 0])  # the threads before it ran
