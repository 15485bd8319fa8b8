"""float16 and bfloat16 NumPy arrays for :func:`numba_pool.backends.contract.computed_in_float32`.

Numba's CPU target has no 16-bit floats, so the entries run their float32
kernels on widened copies. float16 is converted by parallel kernels on the
bit patterns, with the scalar rules the CUDA backend uses
(``rules.float32_bits_of_float16``, ``rules.float16_bits_of_float32``: NumPy's
casts, bit for bit, as tests/test_half_precision.py checks); NumPy's own casts
run on one thread. bfloat16 (ml_dtypes', rare) is converted with NumPy.
"""

import numpy as np
from numba import njit, prange

from ..._spec import HALF, is_16bit_float
from ..contract import Widening
from ..rules import float16_bits_of_float32, float32_bits_of_float16
from ._threading import thread_and_fork_safe


@njit(parallel=True, cache=True)
def _convert_rows(source, target, widen):
    """target = each element of ``source`` converted by the float16 rule (to float32 bits when ``widen``,
    else to the nearest float16's bits): 5-D views, rows (the last axis) in parallel."""
    a0, a1, a2, a3, a4 = target.shape
    for row in prange(a0 * a1 * a2 * a3):
        i3, rest = row % a3, row // a3
        i2, rest = rest % a2, rest // a2
        i1, i0 = rest % a1, rest // a1
        for i4 in range(a4):
            bits = source[i0, i1, i2, i3, i4]
            target[i0, i1, i2, i3, i4] = float32_bits_of_float16(bits) if widen else float16_bits_of_float32(bits)


def _in_memory_order(source: np.ndarray, target: np.ndarray, source_bits, target_bits):
    """Both arrays as 5-D bit views with the target's memory order (innermost last), so rows are runs."""
    source, target = source.view(source_bits), target.view(target_bits)
    missing = (None,) * (5 - target.ndim)
    source, target = source[missing], target[missing]
    order = sorted(range(5), key=lambda axis: (target.shape[axis] > 1, -abs(target.strides[axis])))
    return source.transpose(order), target.transpose(order)


def _widen_float16(half: np.ndarray, single: np.ndarray) -> None:
    _convert_rows(*_in_memory_order(half, single, np.uint16, np.uint32), True)


def _narrow_float16(single: np.ndarray, half: np.ndarray) -> None:
    _convert_rows(*_in_memory_order(single, half, np.uint32, np.uint16), False)


# Module globals stay the plain functions: the serial copies of small calls look them up by name.
_widen_safely, _narrow_safely = thread_and_fork_safe(_widen_float16), thread_and_fork_safe(_narrow_float16)


def _is_16bit(argument) -> bool:
    return type(argument) is np.ndarray and is_16bit_float(argument.dtype)


def _scratch(array: np.ndarray) -> np.ndarray:
    return np.empty_like(array, dtype=np.float32)  # order="K": the 16-bit array's memory order


def _widen(array: np.ndarray) -> np.ndarray:
    """float32 with the same values, in the same memory order: exact for both dtypes."""
    if array.dtype == HALF:
        wide = _scratch(array)
        _widen_safely(array, wide)
        return wide
    # bfloat16 is the upper half of a float32: shift its bits up
    return (array.view(np.uint16).astype(np.uint32, order="K") << 16).view(np.float32)


def _narrow_into(wide: np.ndarray, target: np.ndarray) -> None:
    """Round to nearest, ties to even; NaN stays NaN."""
    if target.dtype == HALF:
        _narrow_safely(wide, target)
        return
    bits = wide.view(np.uint32)
    upper = bits >> 16
    with np.errstate(over="ignore"):  # NaN bits may carry past 32 bits; they are replaced below
        rounded = (bits + (np.uint32(0x7FFF) + (upper & 1))) >> 16
    # A NaN keeps its upper bits, with the quiet bit set when those alone would read as an infinity.
    rounded = np.where(np.isnan(wide), upper | np.where(upper & 0x7F, 0, 0x40), rounded)
    np.copyto(target.view(np.uint16), rounded, casting="unsafe")


WIDENING = Widening(_is_16bit, _widen, _scratch, _narrow_into)
