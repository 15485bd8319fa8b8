"""Fractional max pooling on the CPU: each (n, c) plane has its own window starts per axis.

The starts come from the op module (Graham's pseudo-random sequence, planned on
the host in the input's float type, as PyTorch computes it); here each window
[start, start + kernel) is reduced by ``rules.box_maximum``, the rule adaptive
max pooling uses too (first maximum on ties, the last NaN wins). The backward
is the routed backward every max pooling shares (``routed_backward``).
"""

from numba import njit, prange

from ..rules import box_maximum
from ._common import KERNEL_OPTIONS, NO_INDICES, unravel_row


@njit(inline="always", cache=True)
def fractional_window_maximum(plane, d_starts, h_starts, w_starts, kernel, od, oh, ow):
    """(maximum, flat plane index) of window (od, oh, ow) of a plane whose windows start at ``*_starts``."""
    d, h, w = d_starts[od], h_starts[oh], w_starts[ow]
    return box_maximum(plane, d, d + kernel[0], h, h + kernel[1], w, w + kernel[2])


@njit(**KERNEL_OPTIONS)
def _fractional_max_forward(x, d_starts, h_starts, w_starts, kernel, out, indices, store_indices):
    batch, channels = x.shape[0], x.shape[1]
    out_depth, out_height, out_width = out.shape[2], out.shape[3], out.shape[4]
    for row in prange(batch * channels * out_depth * out_height):
        n, c, od, oh = unravel_row(row, channels, out_depth, out_height)
        for ow in range(out_width):
            best, best_index = fractional_window_maximum(
                x[n, c], d_starts[n, c], h_starts[n, c], w_starts[n, c], kernel, od, oh, ow
            )
            out[n, c, od, oh, ow] = best
            if store_indices:
                indices[n, c, od, oh, ow] = best_index


# --------------------------------------------------------------------------- the backend contract
# Entries of ops.fractional_pool.Kernels: canonical (N, C, D, H, W) views of any memory.


def fractional_max_pool_forward(x, starts, kernel, out, indices):
    """Each window's maximum into ``out``, its flat plane index into ``indices`` unless that is None."""
    store_indices = indices is not None
    _fractional_max_forward(x, *starts, kernel, out, indices if store_indices else NO_INDICES, store_indices)


def fractional_samples_to_host(samples):
    """Host samples are already on the host."""
    return samples


__all__ = ["fractional_max_pool_forward", "fractional_samples_to_host"]
