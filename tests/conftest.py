"""The ``backend`` fixture: one test body run on NumPy arrays, CUDA device arrays and dask arrays.

A test that takes ``backend`` runs once per backend; ``@pytest.mark.backends("cuda")`` keeps it to
the backends named (a comparison with the CPU says nothing on the CPU itself). ``backend.put``
moves a NumPy array there, ``backend.get`` brings a result (or a tuple of them) back to NumPy and
checks that it stayed on that backend. The CUDA backend is numba's simulator on a machine without
a GPU (the root conftest.py sets it up).
"""

from __future__ import annotations

import gc
import importlib.util
import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest

from cases import strided_view

BACKENDS = ("cpu", "cuda", "dask")

# The simulator runs kernels as Python on NumPy scalars, which warn where a GPU silently gives
# inf or NaN (inf - inf in a window sum, for one); the results are compared all the same.
_BACKEND_MARKS = {"cuda": [pytest.mark.filterwarnings("ignore::RuntimeWarning")]}

_DASK_CHUNK = 2  # small chunks: windows cross chunk borders

_SIMULATOR_SPEED_UP = ("numba_cuda", "greenlet")  # tests/simulator_blocks.py needs both
if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" and all(importlib.util.find_spec(name) for name in _SIMULATOR_SPEED_UP):
    import simulator_blocks  # a block's CUDA threads run as greenlets in one Python thread (see its docstring)

    simulator_blocks.install()


@dataclass(frozen=True)
class Backend:
    name: str
    put: Callable[..., Any]  # (NumPy array, view="contiguous") -> the same values on this backend
    get: Callable[[Any], Any]  # a result or a tuple of results -> NumPy

    def __repr__(self) -> str:
        return self.name


def pytest_configure(config):
    config.addinivalue_line("markers", "backends(*names): run a test taking `backend` on these backends only")
    config.addinivalue_line("markers", "parallel_kernels: let calls above SERIAL_BELOW run the parallel CPU kernels")


@pytest.fixture(autouse=True)
def serial_twins_unless_parallel_kernels(request, monkeypatch):
    """Run the CPU backend's serial twins at every size, unless the test is marked ``parallel_kernels``
    (which keeps the library's own threshold: small calls serial, large ones parallel).

    A serial twin is its parallel kernel's own code compiled with ``prange`` as ``range``, so it
    computes the same results: tests/test_small_work.py compares the two on every op bit for bit.
    The parallel kernels also run in the marked tests (thread counts, threads and fork, float16
    conversions) and in tests that set ``SERIAL_BELOW`` themselves (test_avg_backward_fast,
    test_max_scratch, test_warm through ``numba_pool.warm``). Compiling the parallel kernels too,
    for every dtype and memory layout the tests reach, was 706 of the 1516 CPU-seconds a cold run
    spent compiling.
    """
    if request.node.get_closest_marker("parallel_kernels") is None:
        from numba_pool.backends.cpu import _threading

        monkeypatch.setattr(_threading, "SERIAL_BELOW", 1 << 62)


def pytest_sessionfinish(session):
    """Collect the session's garbage now, until a pass finds none, then freeze what is left.

    At unconfigure pytest runs five full garbage-collector passes, so that unraisable exceptions
    (raised in ``__del__``, say) come out and get reported; each pass walks everything the worker
    imported and compiled, about half a second here. Passing until a pass finds nothing collects
    the same garbage and raises the same exceptions, into pytest's hook (still installed then); the
    freeze leaves pytest's own passes only what later hooks allocate. About 1 s off the end of a run.
    """
    for _ in range(10):  # a finalizer that makes new garbage each pass must not keep the session alive
        if not gc.collect():
            break
    gc.freeze()


def pytest_generate_tests(metafunc):
    if "backend" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("backends")
    names = marker.args if marker else BACKENDS
    unknown = set(names) - set(BACKENDS)
    if unknown:
        raise ValueError(f"unknown backends {sorted(unknown)}: the backends are {BACKENDS}")
    parameters = [pytest.param(name, marks=_BACKEND_MARKS.get(name, [])) for name in names]
    metafunc.parametrize("backend", parameters, indirect=True)


@pytest.fixture
def backend(request) -> Backend:
    return {"cpu": _cpu, "cuda": _cuda, "dask": _dask}[request.param]()


def _each(result, convert):
    return tuple(convert(item) for item in result) if isinstance(result, tuple) else convert(result)


def _cpu() -> Backend:
    def get(result):
        return _each(result, _numpy_result)

    return Backend("cpu", strided_view, get)


def _numpy_result(array):
    assert isinstance(array, np.ndarray), f"expected a NumPy array, got {type(array).__name__}"
    return array


def _cuda() -> Backend:
    pytest.importorskip("numba_cuda", reason="the CUDA backend needs numba-cuda (pip install -e '.[test]' installs it)")
    from numba import cuda

    from numba_pool.backends import _dispatch

    def put(array, view="contiguous"):
        if view == "step":  # every other element of a twice-as-wide device buffer
            wide = np.zeros(array.shape[:-1] + (2 * array.shape[-1],), array.dtype)
            wide[..., ::2] = array
            return cuda.to_device(wide)[..., ::2]
        if view != "contiguous":
            raise ValueError(f"device arrays here are 'contiguous' or 'step', not {view!r}")
        return cuda.to_device(np.ascontiguousarray(array))

    def to_host(array):
        assert _dispatch.is_device_array(array), f"expected a device array, got {type(array).__name__}"
        return array.copy_to_host()

    return Backend("cuda", put, lambda result: _each(result, to_host))


def _dask() -> Backend:
    da = pytest.importorskip("dask.array", reason="the dask backend needs dask (pip install -e '.[test]' installs it)")

    def put(array, view="contiguous"):
        return da.from_array(strided_view(array, view), chunks=_DASK_CHUNK)

    def compute(array):
        assert isinstance(array, da.Array), f"expected a dask array, got {type(array).__name__}"
        return array.compute()

    return Backend("dask", put, lambda result: _each(result, compute))
