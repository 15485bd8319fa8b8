"""CPU kernels: ``@njit(parallel=True)`` loops over canonical (N, C, D, H, W) views.

Every kernel writes into preallocated outputs, and each ``prange`` iteration
writes a disjoint part of them, so results do not depend on the thread count.
"""

from .avg_pool import avg_pool_backward, avg_pool_forward
from .max_pool import max_pool_backward, max_pool_forward
from .stochastic_pool import stochastic_pool_forward, stochastic_pool_inference_backward

__all__ = [
    "avg_pool_backward",
    "avg_pool_forward",
    "max_pool_backward",
    "max_pool_forward",
    "stochastic_pool_forward",
    "stochastic_pool_inference_backward",
]
