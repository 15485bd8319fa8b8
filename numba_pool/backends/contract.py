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

Entries write their float results into the parameters named in
``OUTPUT_PARAMETERS`` (``out``, ``grad_input``) and only read the others. That
convention lets one wrapper, :func:`computed_in_float32`, give every entry of
every op 16-bit floats (float16, and bfloat16 where a backend can hold it)
without a kernel of their own: see its docstring for the rounding rule.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
from dataclasses import dataclass
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


# The parameters into which entries write their float results; an entry only reads its other arguments.
OUTPUT_PARAMETERS = frozenset({"out", "grad_input"})


@dataclass(frozen=True)
class Widening:
    """A backend's conversions between its 16-bit float arrays and float32 arrays of the same memory order."""

    is_16bit: Callable  # argument -> whether it is an array of a 16-bit float dtype this backend converts
    widen: Callable  # 16-bit array -> a new float32 array of the same values (exact)
    scratch: Callable  # 16-bit array -> a new, unwritten float32 array of its shape and memory order
    narrow_into: Callable  # (float32 array, 16-bit array) -> each value rounded to the nearest (ties to even) into it


def computed_in_float32(entry: Callable, widening: Widening) -> Callable:
    """``entry`` taking 16-bit floats: computed by its float32 form, each result rounded once to 16 bits.

    A call with no 16-bit float array runs ``entry`` as it is. Otherwise every 16-bit input is
    widened to float32 (exactly: every float16 and bfloat16 value, NaN payloads included, is a
    float32 value), the float32 entry runs, and each 16-bit output receives its float32 result
    rounded to nearest, ties to even. So a 16-bit result is the float32 result on the same values,
    rounded once: maxima, indices, ties and NaN rules are those of float32 (hence exact), sums
    accumulate as the float32 kernels accumulate them, and stochastic pooling draws the same
    samples. Integer arrays (indices) are passed through untouched. The front end never mixes a
    16-bit float with another float dtype in one call, so outputs and inputs agree.
    """
    names = list(inspect.signature(entry).parameters)
    outputs = frozenset(i for i, name in enumerate(names) if name in OUTPUT_PARAMETERS)
    if not outputs:  # nothing to round (index_range): no float is ever computed
        return entry
    is_16bit = widening.is_16bit

    @functools.wraps(entry)
    def call(*args):
        if not any([is_16bit(arg) for arg in args]):
            return entry(*args)
        wide = [
            arg if not is_16bit(arg) else widening.scratch(arg) if i in outputs else widening.widen(arg)
            for i, arg in enumerate(args)
        ]
        entry(*wide)
        for i in outputs:
            if is_16bit(args[i]):
                widening.narrow_into(wide[i], args[i])

    return call
