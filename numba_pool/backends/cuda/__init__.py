"""The CUDA backend (numba-cuda): ``@cuda.jit`` kernels, one thread per output element, backward passes as gathers.

Imported only when a call receives a CUDA array, so CPU-only users never
import numba.cuda. Each kernel module lists its entries of the backend
contract (:mod:`numba_pool.backends.contract`) in ``__all__``, with the names
and parameters of the CPU's; this package gathers them. They take
``DeviceView`` objects (see ``_arrays``) and launch on the stream of the input
array. Each is exported wrapped by
:func:`~numba_pool.backends.contract.computed_in_float32`, so it takes float16
arrays, computed in float32 (``_half``).
"""

from ..._spec import check_elements_distinct, is_bfloat16
from ..contract import computed_in_float32, gather_entries
from ._arrays import DeviceView, as_view, export, overlaps
from ._arrays import empty as _empty
from ._half import WIDENING

_ENTRIES = gather_entries(__name__, __path__, wrap=lambda entry: computed_in_float32(entry, WIDENING), skip=("_arrays", "_half"))
globals().update(_ENTRIES)
ENTRIES = tuple(sorted(_ENTRIES))


def asarray(array, name: str, op: str) -> DeviceView:
    view = as_view(array, name, op)
    if is_bfloat16(view.dtype):
        raise TypeError(
            f"{op}: {name} is a bfloat16 device array, which the CUDA backend does not take (float16, float32 "
            "and float64 it does); convert it, or pool bfloat16 torch tensors with numba_pool.torch's modules"
        )
    return view


def empty(shape, dtype, like: DeviceView) -> DeviceView:
    return _empty(shape, dtype, like)


def check_out(out, shape, dtype, op: str, source: DeviceView, source_name: str = "x", also_read=()) -> DeviceView:
    """The user's preallocated device ``out``, once its shape, dtype and memory are known to be usable
    (``also_read``: (name, array) pairs of further arrays the kernel reads, which ``out`` must not overlap)."""
    view = as_view(out, "out", op)
    if view.shape != shape:
        raise ValueError(f"{op}: out must have shape {shape} (the output's shape in this layout); got {view.shape}")
    if view.dtype != dtype:
        raise TypeError(f"{op}: out must have dtype {dtype} (the dtype of {source_name}); got {view.dtype}")
    check_elements_distinct(view.shape, view.strides, view.dtype.itemsize, op)
    for name, array in ((source_name, source), *also_read):
        if overlaps(view, array):  # address ranges only: interleaved device views are refused too
            raise ValueError(
                f"{op}: out must not share memory with {name} (on the GPU: its address range must not "
                f"overlap {name}'s); pass a separate array"
            )
    return view


__all__ = ["asarray", "check_out", "empty", "export", *ENTRIES]
