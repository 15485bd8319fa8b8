"""The range of an index array, checked before a backward pass or an unpooling scatters through it."""

import numpy as np
from numba import njit, prange

from ._common import KERNEL_OPTIONS

_BLOCKS = 64  # parts of the array that threads take in turn; a few per thread balance the load


@njit(**KERNEL_OPTIONS)
def _extremes(flat):
    """(smallest, largest) of a non-empty 1-D array, in one parallel pass.

    Each block keeps its own extremes with branch-free selects (the loop
    vectorises; a prange min/max reduction does not).
    """
    size = flat.shape[0]
    blocks = min(_BLOCKS, size)
    lows = np.empty(blocks, flat.dtype)
    highs = np.empty(blocks, flat.dtype)
    for block in prange(blocks):
        first, stop = block * size // blocks, (block + 1) * size // blocks
        low = high = flat[first]
        for i in range(first, stop):
            value = flat[i]
            low = value if value < low else low
            high = value if value > high else high
        lows[block], highs[block] = low, high
    return lows.min(), highs.max()


def index_range(indices, plane) -> tuple[int, int]:
    """(smallest, largest) of a non-empty integer array of any memory layout.

    ``ravel(order="K")`` is a view for any dense array (contiguous in some axis
    order), so the pass reads the indices once where they lie.
    """
    low, high = _extremes(indices.ravel(order="K"))
    return int(low), int(high)


__all__ = ["index_range"]
