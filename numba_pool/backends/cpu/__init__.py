"""CPU kernels: ``@njit(parallel=True)`` loops over canonical views.

Kernels take (N, C, D, H, W) views, or (N, D, H, W, C) views for the
``*_channels_last`` variants that run when the channels are contiguous in
memory. Every kernel writes into preallocated outputs, and each ``prange``
iteration writes a disjoint part of them, so results do not depend on the
thread count.

Each kernel is exported wrapped by :func:`numba_pool._threading.thread_and_fork_safe`,
so it is safe to call from several Python threads and in forked processes
whatever Numba's threading layer.
"""

from ._threading import load_tbb, thread_and_fork_safe
from ._arrays import as_int64, asarray, check_out, empty, export
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
    global_avg_forward_flat,
)
from .indices import index_range
from .max_pool import (
    max_pool_backward,
    max_pool_backward_channels_last,
    max_pool_backward_flat,
    max_pool_forward,
    max_pool_forward_channels_last,
)
from .stochastic_pool import (
    stochastic_pool_forward,
    stochastic_pool_forward_channels_last,
    stochastic_pool_inference_backward,
)
from .unpool import max_unpool

__all__ = [
    "as_int64",
    "asarray",
    "check_out",
    "empty",
    "export",
    "index_range",
    "adaptive_avg_backward",
    "adaptive_avg_forward",
    "adaptive_max_forward",
    "avg_pool_backward",
    "avg_pool_backward_channels_last",
    "avg_pool_forward",
    "avg_pool_forward_channels_last",
    "global_avg_backward",
    "global_avg_backward_channels_last",
    "global_avg_forward",
    "global_avg_forward_channels_last",
    "global_avg_forward_flat",
    "max_pool_backward",
    "max_pool_backward_channels_last",
    "max_pool_backward_flat",
    "max_pool_forward",
    "max_pool_forward_channels_last",
    "max_unpool",
    "stochastic_pool_forward",
    "stochastic_pool_forward_channels_last",
    "stochastic_pool_inference_backward",
]

load_tbb()  # only if the user asked for TBB; before the first parallel launch, so that Numba finds pip's TBB

_ARRAY_HELPERS = {"as_int64", "asarray", "check_out", "empty", "export"}
for _name in __all__:
    if _name not in _ARRAY_HELPERS:
        globals()[_name] = thread_and_fork_safe(globals()[_name])
del _name
