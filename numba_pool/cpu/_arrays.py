"""The array side of the CPU backend: NumPy arrays in, NumPy arrays out.

The CUDA backend has functions of the same names for device arrays, so the
public functions treat both alike.
"""

import numpy as np
from numba import njit

from .._spec import check_out, host_array

# Below this many indices one compiled pass beats NumPy's two reductions, which cost a few microseconds each.
_COMPILED_RANGE_BELOW = 1 << 16

def asarray(array, name: str, op: str) -> np.ndarray:
    return host_array(array, name, op)


def empty(shape, dtype, like) -> np.ndarray:
    return np.empty(shape, dtype)


def index_range(indices: np.ndarray, plane) -> tuple[int, int]:
    """(smallest, largest) of a non-empty integer array."""
    if indices.size < _COMPILED_RANGE_BELOW:
        return _small_range(indices.ravel())
    return int(indices.min()), int(indices.max())


@njit(cache=True, nogil=True)
def _small_range(flat):
    low = high = flat[0]
    for value in flat[1:]:
        low = min(low, value)
        high = max(high, value)
    return int(low), int(high)


def as_int64(indices: np.ndarray) -> np.ndarray:
    return indices.astype(np.int64, copy=False)


def export(result):
    return result


__all__ = ["as_int64", "asarray", "check_out", "empty", "export", "index_range"]
