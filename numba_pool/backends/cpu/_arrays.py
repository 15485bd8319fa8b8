"""The array side of the CPU backend: NumPy arrays in, NumPy arrays out.

The CUDA backend has functions of the same names for device arrays, so the
public functions treat both alike. ``WIDENING`` converts float16 and bfloat16
arrays for :func:`numba_pool.backends.contract.computed_in_float32` (Numba's CPU
target has no 16-bit floats).
"""

import numpy as np

from ..._spec import HALF, check_out, host_array, is_16bit_float
from ..contract import Widening


def asarray(array, name: str, op: str) -> np.ndarray:
    return host_array(array, name, op)


def empty(shape, dtype, like) -> np.ndarray:
    return np.empty(shape, dtype)


def export(result):
    return result


# --------------------------------------------------------------------------- 16-bit floats


def _is_16bit(argument) -> bool:
    return type(argument) is np.ndarray and is_16bit_float(argument.dtype)


def _widen(array: np.ndarray) -> np.ndarray:
    """float32 with the same values and memory order (order="K"): exact for both dtypes."""
    if array.dtype == HALF:
        return array.astype(np.float32, order="K")
    # bfloat16 is the upper half of a float32: shift its bits up (no ml_dtypes cast needed)
    return (array.view(np.uint16).astype(np.uint32, order="K") << 16).view(np.float32)


def _scratch(array: np.ndarray) -> np.ndarray:
    return np.empty_like(array, dtype=np.float32)  # order="K": the output's memory order


def _narrow_into(wide: np.ndarray, target: np.ndarray) -> None:
    """Round to nearest, ties to even (NumPy's float16 cast; bfloat16 below, NaN kept NaN)."""
    if target.dtype == HALF:
        np.copyto(target, wide, casting="same_kind")
        return
    bits = wide.view(np.uint32)
    upper = bits >> 16
    with np.errstate(over="ignore"):  # NaN bits may carry past 32 bits; they are replaced below
        rounded = (bits + (np.uint32(0x7FFF) + (upper & 1))) >> 16
    nan = np.isnan(wide)
    # A NaN keeps its upper bits, with the quiet bit set when those alone would read as an infinity.
    rounded = np.where(nan, upper | np.where(upper & 0x7F, 0, 0x40), rounded)
    np.copyto(target.view(np.uint16), rounded, casting="unsafe")


WIDENING = Widening(_is_16bit, _widen, _scratch, _narrow_into)

__all__ = ["asarray", "check_out", "empty", "export"]
