"""CPU kernels that are safe under every Numba threading layer, with Python threads and with fork.

Numba picks its threading layer once per process, at the first parallel
launch, and the layers differ (see README, "Threads, processes and fork"):

- ``tbb``: safe with concurrent calls from Python threads and after ``fork``.
  Used when asked for (``NUMBA_THREADING_LAYER=tbb``; :func:`load_tbb` makes
  pip's TBB visible to Numba), not by default: it costs more per call.
- ``omp`` (GNU OpenMP): safe with threads, but a process forked after a
  parallel launch is killed by Numba as soon as it runs a parallel region.
  There the kernels switch to serial twins (compiled once, cached on disk).
- ``workqueue``: safe after fork, but concurrent launches abort the process,
  so calls are serialised by a lock.

:func:`thread_and_fork_safe` wraps each exported CPU kernel. Once the layer is
known to be thread-safe and the process is not an OpenMP fork child, a call
costs one extra Python frame, a look at each array argument's size and memory
order, and one global read: no lock.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.metadata
import os
import sys
import threading
import types
from typing import Callable

import numba
import numpy as np

from ._arrays import kernel_arguments, plain

THREAD_SAFE_LAYERS = frozenset({"tbb", "omp"})
_SERIAL_SUFFIX = "__serial"  # serial twins get their own qualname, hence their own cache files
_TBB_LIBRARY = {"linux": "libtbb.so.12", "darwin": "libtbb.12.dylib", "win32": "tbb12.dll"}  # the names Numba opens
_KERNEL_PACKAGE = "numba_pool.backends.cpu"

_lock = threading.Lock()  # serialises kernel calls while the layer is unknown or not thread-safe
_fast_path = False  # True once the layer is known thread-safe and parallel regions may run here
_serial_only = False  # True in a child forked after GNU OpenMP was launched in its parent
_serial_twins_installed = False


# --------------------------------------------------------------------------- choosing the layer


def load_tbb() -> bool:
    """When the user asks for Numba's TBB layer, load the ``tbb`` wheel's library so that Numba finds it.

    Numba opens ``libtbb.so.12`` by name, and pip puts it in ``<prefix>/lib``,
    which is not on the library search path outside conda. A library already
    loaded is found by name, so loading it by full path here is enough.

    Only ``NUMBA_THREADING_LAYER=tbb`` (or ``numba.config.THREADING_LAYER = "tbb"``)
    triggers it: otherwise Numba's own choice stands (OpenMP on most Linux
    machines), because TBB measured slower here for small calls (about 2x the
    per-call overhead) and next to PyTorch in one process (PyTorch's OpenMP
    threads take the cores TBB's workers wait for). Does nothing once Numba has
    chosen its layer.

    Returns
    -------
    bool
        Whether TBB's library is now loaded by this call.
    """
    if str(numba.config.THREADING_LAYER).lower() != "tbb" or active_layer() is not None:
        return False
    path = _tbb_library_path()
    if path is None:
        return False
    try:
        ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    except OSError:  # a broken or foreign-architecture install: Numba then reports that it cannot load TBB
        return False
    return True


def _tbb_library_path() -> str | None:
    name = _TBB_LIBRARY.get(sys.platform)
    if name is None:
        return None
    try:
        files = importlib.metadata.distribution("tbb").files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name == name:
            path = str(file.locate())
            return path if os.path.exists(path) else None
    return None


def start_threading_layer() -> str | None:
    """Launch the thread pool once (a parallel kernel on a tiny array, which a plain call would run
    serially), so that Numba fixes its layer and it can be named; returns the layer."""
    from .global_pool import _forward_flat  # a plain parallel kernel: (planes, plane size) -> (planes,)

    _call_carefully(_forward_flat, (np.zeros((1, 1)), np.zeros(1)))
    return active_layer()


def active_layer() -> str | None:
    """Numba's threading layer in this process, or None before the first parallel launch."""
    try:
        return numba.threading_layer()
    except ValueError:
        return None


# --------------------------------------------------------------------------- calling kernels


# Work (elements of a kernel's largest array argument) below which a call runs the kernel's serial twin: launching
# the thread pool costs a few microseconds, more than a few thousand elements take on one core, and much
# more when another process keeps the other cores busy. Results do not depend on it (each prange
# iteration writes its own part of the outputs); tests set it to 0 or to a huge value to run either path.
SERIAL_BELOW = 8192


def thread_and_fork_safe(kernel: Callable) -> Callable:
    """``kernel`` (a parallel CPU kernel, or a Python function that launches one), made safe to call
    from several Python threads and in forked children, whatever Numba's threading layer.

    Small work (every array argument under ``SERIAL_BELOW`` elements: a backward's gradient may be
    small while the array it fills is not) runs the kernel's serial twin, which launches no threads,
    so it needs no lock in any layer. Fortran-ordered arrays reach the kernel as arrays of any
    strides (see :func:`~numba_pool.backends.cpu._arrays.kernel_arguments`).
    """
    serial = None

    @functools.wraps(kernel)
    def call_kernel(*args):
        nonlocal serial
        small = max([arg.size for arg in args if type(arg) is np.ndarray], default=0) < SERIAL_BELOW
        args = kernel_arguments(args)
        if small:
            if serial is None:
                serial = _small_work_twin(kernel)
            result = serial(*args)
        elif _fast_path:
            result = kernel(*args)
        else:
            result = _call_carefully(kernel, args)
        return plain(result)

    call_kernel.parallel_kernel = kernel
    return call_kernel


def _call_carefully(kernel: Callable, args: tuple):
    if _serial_only:
        return _serial_version(kernel)(*args)  # no threads of ours run here, so no lock either
    with _lock:
        result = kernel(*args)
    _learn_layer()
    return result


def _learn_layer() -> None:
    """Take the fast path from now on if the layer that the first launch chose is thread-safe."""
    global _fast_path
    _fast_path = active_layer() in THREAD_SAFE_LAYERS and not _serial_only


def _after_fork_in_child() -> None:
    global _lock, _fast_path, _serial_only
    _lock = threading.Lock()  # another thread may have held the parent's: it would never be released here
    if _forked_openmp():
        _serial_only = True
        _fast_path = False


def _forked_openmp() -> bool:
    """Whether GNU OpenMP was launched before this fork: Numba then kills any parallel region here."""
    if active_layer() != "omp":
        return False
    from numba.np.ufunc import omppool

    return getattr(omppool, "openmp_vendor", "GNU") == "GNU"  # Intel's OpenMP survives fork


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)


# --------------------------------------------------------------------------- serial twins for OpenMP fork children


def _serial_version(kernel: Callable) -> Callable:
    """The kernel as it runs in this process once every parallel kernel has its serial twin."""
    global _serial_twins_installed
    with _lock:
        if not _serial_twins_installed:
            _install_serial_twins()
            _serial_twins_installed = True
    python = getattr(kernel, "py_func", kernel)
    return getattr(sys.modules[python.__module__], python.__name__)


def _install_serial_twins() -> None:
    """Rebind each parallel kernel of the CPU backend, in this process only, to a serial twin.

    Rebinding the module globals (rather than wrapping) also reaches kernels
    that call other kernels, and the Python functions that launch them, since
    both look their callees up in the module when they are compiled or called.
    """
    for name, module in list(sys.modules.items()):
        if name.startswith(_KERNEL_PACKAGE + ".") and module is not None:
            for attribute, value in list(vars(module).items()):
                if _is_parallel_kernel(value) and value.py_func.__module__ == name:
                    setattr(module, attribute, _cached_serial_twin(value))


def _small_work_twin(kernel: Callable) -> Callable:
    """The serial twin of ``kernel``; for a Python function, its copy in ``_serial_namespace``.

    The module keeps its parallel kernels; only the copies call serial twins.
    """
    if _is_parallel_kernel(kernel):
        return _cached_serial_twin(kernel)
    return _serial_namespace(kernel.__globals__["__name__"])[kernel.__name__]


@functools.lru_cache(maxsize=None)
def _serial_namespace(module_name: str) -> dict:
    """A copy of a kernel module's globals in which every parallel kernel is its serial twin and every
    Python function of the module a copy that looks its callees up here (so that a wrapper calling
    another wrapper stays serial).

    Made at the module's first small call: module constants changed later (a test's monkeypatch) are
    not seen by the copies; tests that change them set ``SERIAL_BELOW`` to 0, or change the copy too
    (tests/test_max_scratch.py).
    """
    namespace = dict(vars(sys.modules[module_name]))
    for name, value in namespace.items():
        if _is_parallel_kernel(value):
            namespace[name] = _cached_serial_twin(value)
        elif isinstance(value, types.FunctionType) and value.__module__ == module_name:
            copy = types.FunctionType(value.__code__, namespace, value.__name__, value.__defaults__, value.__closure__)
            namespace[name] = functools.wraps(value)(copy)
    return namespace


@functools.lru_cache(maxsize=None)
def _cached_serial_twin(kernel) -> Callable:
    return _serial_twin(kernel)


def _is_parallel_kernel(value) -> bool:
    return isinstance(value, numba.core.registry.CPUDispatcher) and bool(value.targetoptions.get("parallel"))


def _serial_twin(kernel) -> Callable:
    """The same Python code compiled with ``parallel=False`` (``prange`` runs as ``range``)."""
    python = kernel.py_func
    twin = types.FunctionType(python.__code__, python.__globals__, python.__name__, python.__defaults__, python.__closure__)
    twin.__qualname__ = python.__qualname__ + _SERIAL_SUFFIX
    twin.__module__ = python.__module__
    twin.__doc__ = python.__doc__
    options = {key: value for key, value in kernel.targetoptions.items() if key not in ("parallel", "nopython")}
    return numba.njit(parallel=False, cache=True, **options)(twin)
