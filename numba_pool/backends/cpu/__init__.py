"""The CPU backend: ``@njit(parallel=True)`` kernels, one module per op family.

Each kernel module lists its entries of the backend contract (see
:mod:`numba_pool.backends.contract`) in ``__all__``: plain functions taking
canonical (N, C, D, H, W) views of any memory, which pick the kernel for that
memory (channels-last kernels vectorise over the channels when those are
innermost) and allocate its scratch. Every kernel writes into preallocated
outputs, and each ``prange`` iteration writes a disjoint part of them, so
results do not depend on the thread count.

This package gathers those entries from its modules, so a new kernel module
needs no line here. Each is exported wrapped by
:func:`~numba_pool.backends.cpu._threading.thread_and_fork_safe`, so it is
safe to call from several Python threads and in forked processes whatever
Numba's threading layer, and by
:func:`~numba_pool.backends.contract.computed_in_float32`, so it takes float16
(and ml_dtypes' bfloat16) arrays, computed in float32.
"""

from ..contract import computed_in_float32, gather_entries
from ._arrays import asarray, check_out, empty, export
from ._half import WIDENING
from ._threading import load_tbb, thread_and_fork_safe

load_tbb()  # only if the user asked for TBB; before the first parallel launch, so that Numba finds pip's TBB

_ENTRIES = gather_entries(
    __name__, __path__, wrap=lambda entry: computed_in_float32(thread_and_fork_safe(entry), WIDENING), skip=("_arrays", "_half")
)
globals().update(_ENTRIES)
ENTRIES = tuple(sorted(_ENTRIES))
__all__ = ["asarray", "check_out", "empty", "export", *ENTRIES]
