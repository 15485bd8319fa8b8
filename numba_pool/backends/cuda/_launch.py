"""Kernel launching shared by every op: one thread per element of a 5-D (N, C, D, H, W) space.

``per_element(body)`` makes a kernel that calls the device function
``body(args, n, c, d, h, w)`` once for each element. The grid is 3-D: the
x axis runs along the contiguous axis of the memory (the flattened (H, W)
plane for channels-first arrays, the channels for channels-last ones) so that
neighbouring threads touch neighbouring addresses; y runs along the other of
the two; z along (N, D). Indices are split with 32-bit unsigned divisions
(64-bit ones are slow on GPUs), and y and z loop when the grid limit of 65535
blocks would be exceeded.
"""

from __future__ import annotations

import math
import types
import warnings

import numpy as np
from numba import cuda, int64, uint32

from ..._spec import channels_innermost
from . import _arrays

_THREADS_PER_BLOCK = 256
_MAX_GRID_YZ = 65535


def per_element(body):
    @cuda.jit
    def kernel(shape, channels_fastest, args):
        batch, channels, depth, height, width = shape
        plane = height * width
        x_extent = channels if channels_fastest else plane
        y_extent = plane if channels_fastest else channels
        i = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        if i >= x_extent:
            return
        # while loops, not range(): a stepped range computes its trip count with a 64-bit division
        j = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
        while j < y_extent:
            c = j
            flat = uint32(i)
            if channels_fastest:
                c = i
                flat = uint32(j)
            h = flat // uint32(width)
            w = flat - h * uint32(width)
            z = cuda.blockIdx.z
            while z < batch * depth:
                n = uint32(z) // uint32(depth)
                d = uint32(z) - n * uint32(depth)
                body(args, int64(n), int64(c), int64(d), int64(h), int64(w))
                z += cuda.gridDim.z
            j += cuda.gridDim.y * cuda.blockDim.y

    return kernel


def shared_with_cpu(function):
    """A CPU ``@njit`` helper, for kernels to call: the same code on both backends.

    numba-cuda compiles an njit function called from a kernel for the device.
    Under the simulator kernels are plain Python, and njit cannot take the
    simulator's in-kernel arrays, so they call the Python code instead.
    """
    return _python_code(function) if _arrays.SIMULATOR else function


def _python_code(function):
    """An njit function's Python code, calling the Python code of the njit functions it uses in turn."""
    python = function.py_func
    names = dict(python.__globals__)
    for name in python.__code__.co_names:
        if hasattr(names.get(name), "py_func"):
            names[name] = _python_code(names[name])
    return types.FunctionType(python.__code__, names, python.__name__, python.__defaults__, python.__closure__)


def launch(kernel, shape, channels_fastest: bool, args, stream) -> None:
    """Run ``kernel`` (made by ``per_element``) over ``shape`` = (N, C, D, H, W)."""
    batch, channels, depth, height, width = (int(n) for n in shape)
    if batch * channels * depth * height * width == 0:
        return
    x_extent, y_extent = (channels, height * width) if channels_fastest else (height * width, channels)
    # A whole warp along x on a GPU. The simulator runs every thread, idle or not, as a Python thread:
    # there a block is no wider than the work (3 channels, channels last: 3 threads, not 32).
    warp = 1 if _arrays.SIMULATOR else 32
    block_x = min(_THREADS_PER_BLOCK, warp * math.ceil(x_extent / warp))
    block_y = max(1, min(_THREADS_PER_BLOCK // block_x, y_extent))
    grid = (
        math.ceil(x_extent / block_x),
        min(math.ceil(y_extent / block_y), _MAX_GRID_YZ),
        min(batch * depth, _MAX_GRID_YZ),
    )
    shape = (batch, channels, depth, height, width)
    if _arrays.SIMULATOR:
        # The simulator computes with NumPy scalars, which warn where a GPU silently wraps
        # (the generator's uint64 products) or gives inf and NaN; keep its output readable.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            kernel[grid, (block_x, block_y, 1), stream](shape, channels_fastest, args)
    else:
        kernel[grid, (block_x, block_y, 1), stream](shape, channels_fastest, args)


def channels_fastest(view) -> bool:
    """Whether a canonical (N, C, D, H, W) view keeps its channels innermost in memory: the CPU's rule
    (``_spec.channels_innermost``); threads then run along the channels."""
    return channels_innermost(view)


def arrays(*views):
    """Kernel arguments for these device views."""
    return tuple(_arrays.kernel_argument(view) for view in views)


# Small read-only host arrays (bins, scales, covering ranges) are memoized by the
# planner, so their device copies can be memoized too: per device, per array.
_device_copies: dict = {}


def on_device(host: np.ndarray, dtype=None):
    """A device copy of a small host array, uploaded once per (array, dtype, device).

    The upload is synchronous (it happens once), so later calls on any stream may read it.
    """
    device = 0 if _arrays.SIMULATOR else cuda.get_current_device().id
    key = (id(host), None if dtype is None else np.dtype(dtype).str, device)
    entry = _device_copies.get(key)
    if entry is None or entry[0] is not host:
        if len(_device_copies) > 4096:
            _device_copies.clear()
        values = np.ascontiguousarray(host if dtype is None else host.astype(dtype))
        entry = (host, cuda.to_device(values))  # holding ``host`` keeps its id from being reused
        _device_copies[key] = entry
    return entry[1]


def uploaded(host: np.ndarray, dtype=None, stream=0):
    """A device copy of a host array computed for this call only (not memoized)."""
    return cuda.to_device(np.ascontiguousarray(host if dtype is None else host.astype(dtype)), stream=stream)


_placeholders: dict = {}


def no_indices():
    """A 5-D int64 device array standing in for indices a call does not store."""
    device = 0 if _arrays.SIMULATOR else cuda.get_current_device().id
    if device not in _placeholders:
        _placeholders[device] = cuda.to_device(np.zeros((1, 1, 1, 1, 1), np.int64))
    return _placeholders[device]
