"""Adaptive pooling on the CPU: windows given per axis as bins (start, stop).

Each bins array has shape (2, out_length): row 0 the starts, row 1 the stops.
"""

import numpy as np
from numba import njit, prange

from ..rules import box_maximum
from ._common import KERNEL_OPTIONS, NO_INDICES, unravel_row


@njit(**KERNEL_OPTIONS)
def _max_forward(x, d_bins, h_bins, w_bins, out, indices, store_indices):
    """Each bin's maximum and its flat plane index, by PyTorch's rule (``replaces_maximum``: first on ties, last NaN)."""
    batch, channels = x.shape[0], x.shape[1]
    out_depth, out_height, out_width = out.shape[2], out.shape[3], out.shape[4]
    for row in prange(batch * channels * out_depth * out_height):
        n, c, od, oh = unravel_row(row, channels, out_depth, out_height)
        for ow in range(out_width):
            best, best_index = box_maximum(
                x[n, c], d_bins[0, od], d_bins[1, od], h_bins[0, oh], h_bins[1, oh], w_bins[0, ow], w_bins[1, ow]
            )
            out[n, c, od, oh, ow] = best
            if store_indices:
                indices[n, c, od, oh, ow] = best_index


@njit(inline="always", cache=True)
def bin_size(bins, i):
    return bins[1, i] - bins[0, i]


@njit(**KERNEL_OPTIONS)
def _avg_forward(x, d_bins, h_bins, w_bins, out):
    """Each bin's mean, accumulated in float64."""
    batch, channels = x.shape[0], x.shape[1]
    out_depth, out_height, out_width = out.shape[2], out.shape[3], out.shape[4]
    for row in prange(batch * channels * out_depth * out_height):
        n, c, od, oh = unravel_row(row, channels, out_depth, out_height)
        for ow in range(out_width):
            total = 0.0
            for d in range(d_bins[0, od], d_bins[1, od]):
                for h in range(h_bins[0, oh], h_bins[1, oh]):
                    for w in range(w_bins[0, ow], w_bins[1, ow]):
                        total += x[n, c, d, h, w]
            out[n, c, od, oh, ow] = total / (bin_size(d_bins, od) * bin_size(h_bins, oh) * bin_size(w_bins, ow))


@njit(**KERNEL_OPTIONS)
def _avg_backward(grad_output, d_bins, h_bins, w_bins, d_cover, h_cover, w_cover, grad_input):
    """Each input element gathers grad / bin size from the bins that hold it.

    ``*_cover`` arrays of shape (2, length) give, per input position, the
    range of bins covering it (bins are ordered and may overlap).
    """
    batch, channels, depth, height, width = grad_input.shape
    for row in prange(batch * channels * depth * height):
        n, c, d, h = unravel_row(row, channels, depth, height)
        for w in range(width):
            total = 0.0
            for od in range(d_cover[0, d], d_cover[1, d]):
                for oh in range(h_cover[0, h], h_cover[1, h]):
                    for ow in range(w_cover[0, w], w_cover[1, w]):
                        size = bin_size(d_bins, od) * bin_size(h_bins, oh) * bin_size(w_bins, ow)
                        total += grad_output[n, c, od, oh, ow] / size
            grad_input[n, c, d, h, w] = total


# --------------------------------------------------------------------------- the backend contract
# Entries of ops.adaptive_pool.AvgKernels and MaxKernels: canonical (N, C, D, H, W) views of any memory;
# ``bins`` holds per axis a (2, output length) array of bin [start, stop), ``covers`` per axis a
# (2, input length) array of the bins [first, stop) containing each position.


def _single_elements(bins) -> bool:
    """Whether every bin holds one element (fractional average pooling's overlapping windows hold two
    where there are as many bins as elements)."""
    return all(bool(np.all(b[1] - b[0] == 1)) for b in bins)


def adaptive_avg_pool_forward(x, bins, out):
    """The mean of each bin of ``x`` into ``out``."""
    if x.shape == out.shape and _single_elements(bins):  # the means are x itself
        np.add(x, 0.0, out=out)  # as the kernel's 0.0 + x: -0.0 becomes +0.0 (VGG's AdaptiveAvgPool2d((7, 7)) on 7 x 7)
    else:
        _avg_forward(x, *bins, out)


def adaptive_avg_pool_backward(grad_output, bins, covers, grad_input):
    """Each input element gathers the gradients of the bins containing it, each divided by its bin's size."""
    if grad_output.shape == grad_input.shape and _single_elements(bins):  # the gradient passes through
        np.add(grad_output, 0.0, out=grad_input)  # as the kernel's 0.0 + grad
    else:
        _avg_backward(grad_output, *bins, *covers, grad_input)


def adaptive_max_pool_forward(x, bins, out, indices):
    """The maximum of each bin into ``out``, its flat plane index into ``indices`` unless that is None."""
    store_indices = indices is not None
    _max_forward(x, *bins, out, indices if store_indices else NO_INDICES, store_indices)


__all__ = ["adaptive_avg_pool_backward", "adaptive_avg_pool_forward", "adaptive_max_pool_forward"]
