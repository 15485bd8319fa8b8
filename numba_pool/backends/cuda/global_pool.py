"""Global pooling on CUDA: plane means and their broadcast gradient, and plane maxima.

Channels-first planes are contiguous runs, so one block reduces a plane (each
thread a strided share, then a fixed tree in shared memory: deterministic). A
block has as many threads as the plane has elements, rounded up to a power of
two, up to ``_BLOCK``: small planes (7 x 7 at the end of a ResNet: 64 threads,
not 128) leave few threads idle, and the CUDA simulator, which runs each thread
as a Python thread, runs them in a fraction of the time.
Channels-last memory runs one thread per (n, c), neighbouring threads on
neighbouring channels.
"""

import functools

import numpy as np
from numba import cuda, from_dtype, int64, uint32

from ..rules import beats_maximum
from ._launch import arrays, channels_fastest, launch, per_element

_BLOCK = 128  # the most threads per block, and the size of the shared arrays
_TO_CANONICAL = (0, 4, 1, 2, 3)


def _block_threads(plane_size: int) -> int:
    """Threads per block for planes of ``plane_size`` elements: a power of two (the tree halves it), at most ``_BLOCK``."""
    return min(_BLOCK, 1 << max(0, plane_size - 1).bit_length())


@functools.lru_cache(maxsize=None)
def _block_means(dtype: np.dtype):
    """A kernel giving out[n, c] = scale * sum of plane x[n, c], one block per plane (shared memory needs the dtype)."""
    element = from_dtype(dtype)

    @cuda.jit
    def kernel(x, out, scale):
        channels, depth, height, width = x.shape[1], x.shape[2], x.shape[3], x.shape[4]
        partial = cuda.shared.array(_BLOCK, element)
        t = cuda.threadIdx.x
        threads = cuda.blockDim.x  # a power of two, at most _BLOCK
        for nc in range(cuda.blockIdx.x, x.shape[0] * channels, cuda.gridDim.x):
            n = uint32(nc) // uint32(channels)
            c = uint32(nc) - n * uint32(channels)
            total = scale - scale  # zero of the dtype
            p = t
            while p < depth * height * width:  # not a stepped range: its trip count is a 64-bit division by threads
                dh = uint32(p) // uint32(width)
                w = uint32(p) - dh * uint32(width)
                d = dh // uint32(height)
                h = dh - d * uint32(height)
                total += x[n, c, d, h, w]
                p += threads
            partial[t] = total
            cuda.syncthreads()
            step = threads // 2
            while step > 0:
                if t < step:
                    partial[t] += partial[t + step]
                cuda.syncthreads()
                step //= 2
            if t == 0:
                out[n, c] = partial[0] * scale
            cuda.syncthreads()

    return kernel


@cuda.jit(device=True)
def _wins(value, index, best, best_index):
    """Whether (value, index) beats (best, best_index) under the CPU's rule (``beats_maximum``, a total
    order, so the tree may compare in any order): NaN beats any number, between NaNs the larger flat
    index wins, between equal numbers the smaller. An index of -1 marks an empty candidate, which never wins."""
    if index < 0:
        return False
    if best_index < 0:
        return True
    return beats_maximum(value, index, best, best_index)


@functools.lru_cache(maxsize=None)
def _block_maxima(dtype: np.dtype):
    """A kernel giving each (n, c) plane's maximum and its flat index, one block per plane: each thread
    scans a strided share, then a fixed tree in shared memory picks the winner (deterministic)."""
    element = from_dtype(dtype)

    @cuda.jit
    def kernel(x, out, indices, store_indices):
        channels, depth, height, width = x.shape[1], x.shape[2], x.shape[3], x.shape[4]
        values = cuda.shared.array(_BLOCK, element)
        places = cuda.shared.array(_BLOCK, int64)
        t = cuda.threadIdx.x
        threads = cuda.blockDim.x  # a power of two, at most _BLOCK
        for nc in range(cuda.blockIdx.x, x.shape[0] * channels, cuda.gridDim.x):
            n = uint32(nc) // uint32(channels)
            c = uint32(nc) - n * uint32(channels)
            best = x[n, c, 0, 0, 0]
            best_index = int64(-1)
            p = t
            while p < depth * height * width:  # as in _block_means
                dh = uint32(p) // uint32(width)
                w = uint32(p) - dh * uint32(width)
                d = dh // uint32(height)
                h = dh - d * uint32(height)
                value = x[n, c, d, h, w]
                if _wins(value, int64(p), best, best_index):
                    best, best_index = value, int64(p)
                p += threads
            values[t], places[t] = best, best_index
            cuda.syncthreads()
            step = threads // 2
            while step > 0:
                if t < step and _wins(values[t + step], places[t + step], values[t], places[t]):
                    values[t], places[t] = values[t + step], places[t + step]
                cuda.syncthreads()
                step //= 2
            if t == 0:
                out[n, c, 0, 0, 0] = values[0]
                if store_indices:
                    indices[n, c, 0, 0, 0] = places[0]
            cuda.syncthreads()

    return kernel


def plane_maxima(x, out, index_argument, store_indices) -> None:
    """Global max pooling of channels-first memory: x and out canonical views, out (N, C, 1, 1, 1);
    ``index_argument`` the kernel argument for the indices (a placeholder when not stored)."""
    if x.size:
        planes = x.shape[0] * x.shape[1]
        threads = _block_threads(x.shape[2] * x.shape[3] * x.shape[4])
        _block_maxima(x.dtype)[min(planes, 65535 * 16), threads, x.stream](*arrays(x, out), index_argument, store_indices)


@cuda.jit(device=True)
def _plane_mean(args, n, c, _d, _h, _w):
    x, out, scale = args
    total = scale - scale
    for d in range(x.shape[2]):
        for h in range(x.shape[3]):
            for w in range(x.shape[4]):
                total += x[n, c, d, h, w]
    out[n, c] = total * scale


_thread_means = per_element(_plane_mean)


def _scale(dtype, view) -> np.generic:
    return dtype.type(1.0 / (view.shape[2] * view.shape[3] * view.shape[4]))


def global_avg_pool_forward(x, out):
    """Entry of ops.global_pool.AvgKernels. x: canonical (N, C, D, H, W) view; out: (N, C)."""
    scale = _scale(x.dtype, x)
    if channels_fastest(x):
        batch, channels = x.shape[0], x.shape[1]
        launch(_thread_means, (batch, channels, 1, 1, 1), True, (*arrays(x, out), scale), x.stream)
    elif x.size:
        planes = x.shape[0] * x.shape[1]
        threads = _block_threads(x.shape[2] * x.shape[3] * x.shape[4])
        _block_means(x.dtype)[min(planes, 65535 * 16), threads, x.stream](*arrays(x, out), scale)


@cuda.jit(device=True)
def _broadcast_share(args, n, c, d, h, w):
    grad_output, grad_input, scale = args
    grad_input[n, c, d, h, w] = grad_output[n, c] * scale


_broadcast = per_element(_broadcast_share)


def global_avg_pool_backward(grad_output, grad_input):
    """Entry of ops.global_pool.AvgKernels. grad_output: (N, C); grad_input: canonical view, every element the plane's share."""
    args = (*arrays(grad_output, grad_input), _scale(grad_input.dtype, grad_input))
    launch(_broadcast, grad_input.shape, channels_fastest(grad_input), args, grad_output.stream)


__all__ = ["global_avg_pool_backward", "global_avg_pool_forward"]
