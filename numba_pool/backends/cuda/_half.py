"""float16 device arrays for :func:`numba_pool.backends.contract.computed_in_float32`.

The entries run their float32 kernels; these kernels convert on the device,
one thread per element, with integer arithmetic on the bit patterns
(``rules.float32_bits_of_float16`` and ``rules.float16_bits_of_float32``), so
no float16 instruction is compiled and NaN payloads survive the round trip.
bfloat16 device arrays are refused by ``asarray`` (numba_pool.torch pools
bfloat16 tensors in float32 itself).
"""

import numpy as np
from numba import cuda, uint16, uint32

from ..._spec import HALF
from ..contract import Widening
from ..rules import float16_bits_of_float32, float32_bits_of_float16
from . import _arrays
from ._launch import arrays, channels_fastest, launch, per_element, shared_with_cpu

_widen_bits = shared_with_cpu(float32_bits_of_float16)
_narrow_bits = shared_with_cpu(float16_bits_of_float32)


@cuda.jit(device=True)
def _widen_element(args, n, c, d, h, w):
    half, single = args
    single[n, c, d, h, w] = uint32(_widen_bits(half[n, c, d, h, w]))


@cuda.jit(device=True)
def _narrow_element(args, n, c, d, h, w):
    single, half = args
    half[n, c, d, h, w] = uint16(_narrow_bits(single[n, c, d, h, w]))


_widen_kernel = per_element(_widen_element)
_narrow_kernel = per_element(_narrow_element)


def _is_16bit(argument) -> bool:
    return type(argument) is _arrays.DeviceView and argument.dtype == HALF


def _bits(view: _arrays.DeviceView, dtype) -> _arrays.DeviceView:
    """The same memory read as unsigned integers of the same size, as 5-D (the launcher's shape)."""
    view = _arrays.DeviceView(view.owner, view.family, view.shape, view.strides, np.dtype(dtype), view.stream)
    return view[(Ellipsis,) + (None,) * (5 - view.ndim)]


def _convert(kernel, source, target, stream) -> None:
    launch(kernel, target.shape, channels_fastest(target), arrays(source, target), stream)


def _scratch(view: _arrays.DeviceView) -> _arrays.DeviceView:
    """A new float32 array of the view's shape, its axes laid out in the view's memory order."""
    order = sorted(range(view.ndim), key=lambda axis: -abs(view.strides[axis]))
    dense = _arrays.empty(tuple(view.shape[axis] for axis in order), np.float32, like=view)
    return dense.transpose(tuple(order.index(axis) for axis in range(view.ndim)))


def _widen(view: _arrays.DeviceView) -> _arrays.DeviceView:
    wide = _scratch(view)
    _convert(_widen_kernel, _bits(view, np.uint16), _bits(wide, np.uint32), view.stream)
    return wide


def _narrow_into(wide: _arrays.DeviceView, target: _arrays.DeviceView) -> None:
    _convert(_narrow_kernel, _bits(wide, np.uint32), _bits(target, np.uint16), target.stream)


WIDENING = Widening(_is_16bit, _widen, _scratch, _narrow_into)
