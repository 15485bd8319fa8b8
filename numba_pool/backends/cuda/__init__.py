"""CUDA kernels (numba-cuda): ``@cuda.jit``, one thread per output element, backward passes as gathers.

Imported only when a call receives a CUDA array, so CPU-only users never
import numba.cuda. The launchers have the names and signatures of the CPU
kernels in :mod:`numba_pool.backends.cpu`; they take ``DeviceView`` objects (see
``_arrays``) and launch on the stream of the input array.
"""

from ..._spec import check_elements_distinct
from ._arrays import DeviceView, as_view, export, overlaps
from ._arrays import empty as _empty
from ._routing import index_range, max_unpool
from .adaptive_pool import adaptive_avg_backward, adaptive_avg_forward, adaptive_max_forward
from .avg_pool import (
    avg_pool_backward,
    avg_pool_backward_channels_last,
    avg_pool_forward,
    avg_pool_forward_channels_last,
)
from .global_pool import (
    global_avg_backward,
    global_avg_backward_channels_last,
    global_avg_forward,
    global_avg_forward_channels_last,
)
from .max_pool import (
    max_pool_backward,
    max_pool_backward_channels_last,
    max_pool_forward,
    max_pool_forward_channels_last,
)
from .stochastic_pool import (
    stochastic_pool_forward,
    stochastic_pool_forward_channels_last,
    stochastic_pool_inference_backward,
)


def asarray(array, name: str, op: str) -> DeviceView:
    return as_view(array, name, op)


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


def as_int64(indices: DeviceView) -> DeviceView:
    return indices  # kernels compile for the index dtype they get; no conversion pass on the device


__all__ = [
    "adaptive_avg_backward",
    "adaptive_avg_forward",
    "adaptive_max_forward",
    "as_int64",
    "asarray",
    "avg_pool_backward",
    "avg_pool_backward_channels_last",
    "avg_pool_forward",
    "avg_pool_forward_channels_last",
    "check_out",
    "empty",
    "export",
    "global_avg_backward",
    "global_avg_backward_channels_last",
    "global_avg_forward",
    "global_avg_forward_channels_last",
    "index_range",
    "max_pool_backward",
    "max_pool_backward_channels_last",
    "max_pool_forward",
    "max_pool_forward_channels_last",
    "max_unpool",
    "stochastic_pool_forward",
    "stochastic_pool_forward_channels_last",
    "stochastic_pool_inference_backward",
]
