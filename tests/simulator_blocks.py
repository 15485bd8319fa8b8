"""Faster simulated launches for the tests: a block's CUDA threads run as greenlets on one Python thread.

Numba's CUDA simulator starts a Python thread for every CUDA thread of a block and releases a
``syncthreads`` barrier by polling them from the launching thread. Only one of them runs at a time
(the GIL), so thread starts and hand-offs are most of its time on our small test shapes. Here one
long-lived Python thread runs every block, each CUDA thread as a greenlet (a coroutine with its own
stack): it runs each waiting greenlet, in the order in which the simulator starts its threads, until
it returns or reaches ``syncthreads``, then starts the next round. So a barrier is released once
every thread still running has reached it, as in the simulator, and the CUDA-thread state that the
simulator's ``cuda`` module reads from the current Python thread (thread and block indices, lane) is
switched with each greenlet. tests/test_simulator_blocks.py compares the two on our kernels.

Between barriers the threads run one after another and are never interrupted, so a kernel free of
races gives the simulator's results, about 4x faster (the float16 every-op check: 2.1 s -> 0.5 s; a
global max over 128-thread blocks, 10x). A racy kernel may not show its race here (a thread sees the
writes of the threads before it in that order, never of those after it), and a thread that
spin-waits for another one's write would wait forever: ours use barriers and atomics only. Only the
test session installs this (tests/conftest.py, under the simulator); kernels marked ``debug=True``
keep the simulator's own threads.
"""

from __future__ import annotations

import os
import queue
import threading
import time

import greenlet
import numpy as np
from numba.cuda.simulator import kernel as _simulator
from numba.cuda.simulator.kernelapi import Dim3


class BlockRunner(_simulator.BlockThread):
    """The Python thread that runs the blocks of every launch, one block at a time.

    A ``BlockThread`` for the simulator's ``cuda`` module (which asks the current thread for its
    indices and calls its ``syncthreads``); its constructor, made for one CUDA thread, is skipped.
    """

    def __init__(self):
        threading.Thread.__init__(self, name="simulated CUDA blocks", daemon=True)
        self.debug = self.abort = False
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()

    def run(self) -> None:
        while True:
            job = self.jobs.get()
            self._manager, self.blockIdx = job.manager, Dim3(*job.block_index)
            try:
                self._run_block(job)
            except BaseException as error:  # the runner must outlive any error, or later launches would wait forever
                job.error = error
            self._manager = None  # keep no launch's arrays alive until the next one
            job.done.set()
            del job

    def _run_block(self, job) -> None:
        self._scheduler = greenlet.getcurrent()
        running = [(index, greenlet.greenlet(job.body)) for index in np.ndindex(*job.manager._block_dim)]
        while running:  # a round: each thread runs to its next syncthreads, or to its end
            for thread_index, cuda_thread in running:
                self._become(thread_index)
                try:
                    cuda_thread.switch()
                except Exception as error:
                    job.error = _named(error, thread_index, job.block_index)
                    running.clear()  # the error's traceback holds this frame: let the other greenlets go
                    return
            running = [(index, cuda_thread) for index, cuda_thread in running if not cuda_thread.dead]

    def _become(self, thread_index) -> None:
        x_size, y_size, _ = self._manager._block_dim
        self.threadIdx = Dim3(*thread_index)
        self.thread_id = thread_index[0] + x_size * (thread_index[1] + y_size * thread_index[2])

    def syncthreads(self) -> None:
        self._scheduler.switch()  # back to _run_block, which resumes this CUDA thread in the next round


class _Job:
    def __init__(self, manager, block_index, args):
        self.manager, self.block_index = manager, block_index
        self.body = lambda: manager._f(*args)
        self.done = threading.Event()
        self.error: BaseException | None = None


def _named(error: Exception, thread_index, block_index) -> Exception:
    """The error with the CUDA thread's indices in front, as the simulator reports it."""
    where = f"tid={list(thread_index)} ctaid={list(block_index)}"
    try:
        named = type(error)(f"{where}: {error}" if str(error) else where)
    except Exception:  # an exception class that takes other arguments: the same error, with a note
        error.add_note(where)
        return error
    return named.with_traceback(error.__traceback__)


_runner: BlockRunner | None = None
_runner_lock = threading.Lock()


def _the_runner() -> BlockRunner:
    global _runner
    with _runner_lock:
        if _runner is None:
            _runner = BlockRunner()
            _runner.start()
        return _runner


def _forget_the_runner() -> None:
    global _runner, _runner_lock
    _runner, _runner_lock = None, threading.Lock()  # a forked child has no runner thread (nor a lock holder)


_simulators_own_run = _simulator.BlockManager.run
BLOCK_DEADLINE_S = 600


def _run_block(manager, block_index, *args) -> None:
    """``BlockManager.run``, on the runner."""
    if manager._debug:  # a debug=True kernel: the simulator's threads, which also raise on division by zero
        _simulators_own_run(manager, block_index, *args)
        return
    runner, job = _the_runner(), _Job(manager, tuple(block_index), args)
    runner.jobs.put(job)
    deadline = time.monotonic() + BLOCK_DEADLINE_S
    while not job.done.wait(timeout=5):
        if not runner.is_alive():
            raise RuntimeError("the simulated-blocks runner thread died")
        if time.monotonic() > deadline:  # a thread spin-waiting for another, say (see the module's docstring)
            raise RuntimeError(f"a simulated block ran for more than {BLOCK_DEADLINE_S} s")
    if job.error is not None:
        raise job.error


def install() -> None:
    _simulator.BlockManager.run = _run_block
    os.register_at_fork(after_in_child=_forget_the_runner)


def installed() -> bool:
    return _simulator.BlockManager.run is _run_block
