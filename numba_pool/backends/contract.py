"""The backend contract: what the ops may call on a backend, the same on the CPU and on CUDA.

A backend is a package (``backends/cpu``, ``backends/cuda``) with

* the array helpers of :class:`ArrayBackend`, and
* one entry per op and direction, listed in the ``__all__`` of its kernel
  modules and gathered by :func:`gather_entries`. Each op declares its entries
  as a Protocol next to its spec (``ops/max_pool.py``: ``Kernels``); the
  shared ones are :class:`RoutedKernels` below.

Entries take canonical (N, C, D, H, W) views of any memory (NumPy arrays, or
``DeviceView`` on CUDA), write into the outputs they are given and return
nothing. They take nothing a backend ignores: the CPU derives its thread
blocking and kernel layout from the views, and ``indices=None`` means "do not
store indices". ``tests/test_backend_contract.py`` checks that both backends
provide every entry with the declared parameters.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, Protocol


class ArrayBackend(Protocol):
    """Arrays in and out of a backend, with the messages of the public functions."""

    def asarray(self, array, name: str, op: str):
        """``array`` as this backend's array type, or a TypeError naming ``name``."""

    def empty(self, shape, dtype, like):
        """A new C-ordered array of this backend, on the device/stream of ``like``."""

    def check_out(self, out, shape, dtype, op: str, source, source_name: str = "x", also_read=()):
        """The user's ``out``, once its shape, dtype and memory are known to be usable."""

    def export(self, result):
        """A result (or tuple of results) as the user's array family."""


class RoutedKernels(Protocol):
    """Entries shared by every op whose backward routes each gradient to one saved position."""

    def index_range(self, indices, plane) -> tuple[int, int]:
        """(lowest, highest) value of a canonical index view, checked before any gather."""

    def routed_backward(self, grad_output, indices, grad_input) -> None:
        """Each output gradient added to the input element its index names, in output order."""

    def max_unpool(self, x, indices, out) -> None:
        """Zeros, then each value of ``x`` at the position its index names (the last in input order wins)."""


def gather_entries(package: str, path, wrap: Callable = lambda entry: entry, skip=("_arrays",)) -> dict[str, Callable]:
    """The entries listed in the ``__all__`` of each module of a backend package, each passed through ``wrap``."""
    entries = {}
    for module_info in pkgutil.iter_modules(path):
        if module_info.name in skip:
            continue
        module = importlib.import_module(f"{package}.{module_info.name}")
        for name in getattr(module, "__all__", ()):
            if name in entries:
                raise ImportError(f"{package}: two kernel modules export the entry {name!r}; rename one")
            entries[name] = wrap(getattr(module, name))
    return entries
