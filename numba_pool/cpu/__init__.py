"""CPU kernels: ``@njit(parallel=True)`` loops over canonical (N, C, D, H, W) views.

Every kernel writes into preallocated outputs, and each ``prange`` iteration
writes a disjoint part of them, so results do not depend on the thread count.
"""

from .adaptive_pool import adaptive_avg_backward, adaptive_avg_forward, adaptive_max_forward
from .avg_pool import avg_pool_backward, avg_pool_forward
from .max_pool import max_pool_backward, max_pool_forward
from .stochastic_pool import stochastic_pool_forward, stochastic_pool_inference_backward
from .unpool import max_unpool

__all__ = [
    "adaptive_avg_backward",
    "adaptive_avg_forward",
    "adaptive_max_forward",
    "avg_pool_backward",
    "avg_pool_forward",
    "max_pool_backward",
    "max_pool_forward",
    "max_unpool",
    "stochastic_pool_forward",
    "stochastic_pool_inference_backward",
]
