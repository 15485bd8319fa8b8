"""Max unpooling on the CPU: place each value at its index in a zeroed plane."""

import numpy as np
from numba import njit, prange

from ._common import KERNEL_OPTIONS, plane_position


@njit(**KERNEL_OPTIONS)
def _unpool(x, indices, out):
    """One thread per (n, c) plane; on repeated indices the last value in input order wins."""
    batch, channels, depth, height, width = out.shape
    in_depth, in_height, in_width = x.shape[2], x.shape[3], x.shape[4]
    for nc in prange(batch * channels):
        n = nc // channels
        c = nc % channels
        out[n, c] = 0
        for d in range(in_depth):
            for h in range(in_height):
                for w in range(in_width):
                    target_d, target_h, target_w = plane_position(indices[n, c, d, h, w], height, width)
                    out[n, c, target_d, target_h, target_w] = x[n, c, d, h, w]



def max_unpool(x, indices, out):
    """Entry of ops.unpool.Kernels: zeros, then each value of ``x`` at its index, on canonical views."""
    _unpool(x, indices.astype(np.int64, copy=False), out)


__all__ = ["max_unpool"]
