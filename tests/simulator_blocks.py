"""Faster simulated launches for the tests: a block whose kernel has no barrier runs in one Python thread.

Numba's CUDA simulator runs every CUDA thread of a block as a Python thread, started one by one and
polled from the launching thread. Only one of them runs at a time (the GIL), so for a kernel that
never calls ``syncthreads`` the threads of a block can as well run one after another in a single
Python thread: that is one of the orders the simulator itself may pick, and a race-free kernel gives
the same result in any order. It spares a thread start and hand-off per CUDA thread, which is most
of the simulator's time on our small test shapes (the float16 every-op check: 2.2 s -> 0.9 s).

Kernels with a barrier (the block reductions of global pooling) keep the simulator's own threads;
one that reaches ``syncthreads`` here anyway raises, so a wrong guess fails a test instead of
hanging or passing. Only the test session installs this (the root conftest.py, under the simulator);
the library and its command-line checks run the simulator as it comes.
"""

from __future__ import annotations

import types

import numpy as np
from numba.cuda.simulator import kernel as _simulator
from numba.cuda.simulator.kernelapi import Dim3

_BARRIERS = frozenset({"syncthreads", "syncthreads_count", "syncthreads_and", "syncthreads_or", "syncwarp"})
_has_barrier: dict = {}  # kernel's Python function -> whether it (or a function it uses) names a barrier


def _names(code: types.CodeType):
    """The global and attribute names a code object uses, nested functions included."""
    yield from code.co_names
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            yield from _names(constant)


def _codes(function, seen: set):
    """The code of ``function`` and of every Python function it reaches through closures and globals
    (device functions through the simulator's wrapper, whose ``fn`` is the Python function)."""
    function = getattr(function, "fn", function)
    if not isinstance(function, types.FunctionType) or function in seen:
        return
    seen.add(function)
    yield function.__code__
    for cell in function.__closure__ or ():
        try:
            yield from _codes(cell.cell_contents, seen)
        except ValueError:  # an empty cell
            pass
    for name in _names(function.__code__):
        yield from _codes(function.__globals__.get(name), seen)


def has_barrier(kernel_function) -> bool:
    if kernel_function not in _has_barrier:
        _has_barrier[kernel_function] = any(not _BARRIERS.isdisjoint(_names(code)) for code in _codes(kernel_function, set()))
    return _has_barrier[kernel_function]


class WholeBlockThread(_simulator.BlockThread):
    """One Python thread that runs every CUDA thread of a block in turn, in the simulator's index order."""

    def __init__(self, body, manager, block_index, debug):
        super().__init__(body, manager, block_index, (0, 0, 0), debug)
        self._body = body

    def run(self) -> None:
        x_size, y_size, _ = self._manager._block_dim
        for thread_index in np.ndindex(*self._manager._block_dim):
            self.threadIdx = Dim3(*thread_index)
            self.thread_id = thread_index[0] + x_size * (thread_index[1] + y_size * thread_index[2])
            self._target, self._args, self._kwargs = self._body, (), {}  # threading.Thread.run drops them
            super().run()  # the simulator's run: an exception is kept, named with the thread's indices
            if self.exception is not None:
                return

    def syncthreads(self) -> None:
        raise RuntimeError("simulator_blocks ran a kernel with a barrier in one thread: has_barrier missed it")


_run_threaded = _simulator.BlockManager.run


def _run_block(manager, block_index, *args) -> None:
    if has_barrier(manager._f):
        _run_threaded(manager, block_index, *args)
        return
    block = WholeBlockThread(lambda: manager._f(*args), manager, block_index, manager._debug)
    block.start()
    block.join()
    if block.exception is not None:
        raise block.exception[0].with_traceback(block.exception[1])


def install() -> None:
    _simulator.BlockManager.run = _run_block


def installed() -> bool:
    return _simulator.BlockManager.run is _run_block
