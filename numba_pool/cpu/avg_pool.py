"""Average pooling on the CPU: forward, and backward as a gather over covering windows.

The divisor of a window is a product of one factor per axis (the window's
size along that axis, counted with or without padding), so the caller passes
``scales``: one array per axis of 1 / factor (0 for an empty window, and the
``divisor_override`` folded into the last axis). Sums are accumulated in float64.
"""

import numpy as np
from numba import njit, prange

from ._common import KERNEL_OPTIONS, interior_windows, next_row, unravel_row, window_extent


@njit(inline="always", cache=True)
def _sum_interior(columns, sums, first, stop, kernel, stride, offset):
    """Window sums over the column sums for windows first..stop-1 (wholly inside), tap by tap (vectorised)."""
    if first >= stop:  # no interior window (a kernel wider than the input): skip the tap loop, O(kernel)
        return
    for ow in range(first, stop):
        sums[ow] = columns[ow * stride + offset]
    for k in range(1, kernel):
        for ow in range(first, stop):
            sums[ow] += columns[ow * stride + offset + k]


@njit(**KERNEL_OPTIONS)
def avg_pool_forward(x, kernel, stride, padding, scales, blocks, out):
    """Write each window's sum over its in-input part, times its scale, to ``out``.

    Separable, like max pooling: the window's input rows are summed into
    per-column float64 sums, then each window sums its columns. Rows are split
    into ``blocks``, each with its own buffers.
    """
    batch, channels, depth, height, width = x.shape
    out_depth, out_height, out_width = out.shape[2], out.shape[3], out.shape[4]
    d_scales, h_scales, w_scales = scales
    kernel_w, stride_w = kernel[2], stride[2]
    interior_first, interior_stop = interior_windows(out_width, width, kernel_w, stride_w, padding[2], 1)
    rows = batch * channels * out_depth * out_height
    for block in prange(blocks):
        columns = np.empty(width, np.float64)
        sums = np.empty(out_width, np.float64)
        first_row = block * rows // blocks
        n, c, od, oh = unravel_row(first_row, channels, out_depth, out_height)
        for _ in range(first_row, (block + 1) * rows // blocks):
            plane = x[n, c]
            d_first, d_stop, _ = window_extent(od * stride[0] - padding[0], kernel[0], depth, padding[0])
            h_first, h_stop, _ = window_extent(oh * stride[1] - padding[1], kernel[1], height, padding[1])
            columns[:] = 0.0
            for d in range(d_first, d_stop):
                for h in range(h_first, h_stop):
                    source = plane[d, h]
                    for w in range(width):
                        columns[w] += source[w]
            for border in range(2):  # windows reaching into the padding, one by one
                first, stop = (0, interior_first) if border == 0 else (interior_stop, out_width)
                for ow in range(first, stop):
                    w_first, w_stop, _ = window_extent(ow * stride_w - padding[2], kernel_w, width, padding[2])
                    total = 0.0
                    for w in range(w_first, w_stop):
                        total += columns[w]
                    sums[ow] = total
            if stride_w == 2:  # the common case, with a constant stride the compiler can vectorise
                _sum_interior(columns, sums, interior_first, interior_stop, kernel_w, 2, -padding[2])
            else:
                _sum_interior(columns, sums, interior_first, interior_stop, kernel_w, stride_w, -padding[2])
            row_scale = d_scales[od] * h_scales[oh]
            out_row = out[n, c, od, oh]
            for ow in range(out_width):
                out_row[ow] = sums[ow] * (row_scale * w_scales[ow])
            n, c, od, oh = next_row(n, c, od, oh, channels, out_depth, out_height)


@njit(**KERNEL_OPTIONS)
def avg_pool_forward_channels_last(x, kernel, stride, padding, scales, out):
    """``avg_pool_forward`` on (N, D, H, W, C) views, summing all channels at once."""
    batch, depth, height, width, channels = x.shape
    out_depth, out_height, out_width = out.shape[1], out.shape[2], out.shape[3]
    d_scales, h_scales, w_scales = scales
    for row in prange(batch * out_depth * out_height):
        n, _, od, oh = unravel_row(row, 1, out_depth, out_height)
        d_first, d_stop, _ = window_extent(od * stride[0] - padding[0], kernel[0], depth, padding[0])
        h_first, h_stop, _ = window_extent(oh * stride[1] - padding[1], kernel[1], height, padding[1])
        row_scale = d_scales[od] * h_scales[oh]
        totals = np.empty(channels, np.float64)
        column = np.empty(channels, np.float64)
        for ow in range(out_width):
            w_first, w_stop, _ = window_extent(ow * stride[2] - padding[2], kernel[2], width, padding[2])
            totals[:] = 0.0
            # The channels-first kernel's order, so both layouts give identical sums: each
            # column of the window is summed over its rows, then the columns in order.
            for w in range(w_first, w_stop):
                column[:] = 0.0
                for d in range(d_first, d_stop):
                    for h in range(h_first, h_stop):
                        source = x[n, d, h, w]
                        for c in range(channels):
                            column[c] += source[c]
                for c in range(channels):
                    totals[c] += column[c]
            scale = row_scale * w_scales[ow]
            target = out[n, od, oh, ow]
            for c in range(channels):
                target[c] = totals[c] * scale


@njit(**KERNEL_OPTIONS)
def avg_pool_backward(grad_output, covers, scales, blocks, grad_input):
    """Each input element gathers grad * scale from every window that covers it.

    Per input row, the gradient rows of the covering windows are first combined
    into one scaled row (a vectorised pass over the output width); each input
    element then sums the entries of the windows covering it. ``covers`` holds
    per axis the precomputed range of windows covering each position. The rows
    are split into ``blocks`` (one row buffer each); every element is written
    exactly once, by one thread: no zero fill, no atomics.
    """
    batch, channels, depth, height, width = grad_input.shape
    out_width = grad_output.shape[4]
    d_covers, h_covers, w_covers = covers
    d_scales, h_scales, w_scales = scales
    rows = batch * channels * depth * height
    for block in prange(blocks):
        # Two zeros past the end let the first two covering windows be read without bounds checks.
        combined = np.zeros(out_width + 2, np.float64)
        for row in range(block * rows // blocks, (block + 1) * rows // blocks):
            n, c, d, h = unravel_row(row, channels, depth, height)
            combined[:out_width] = 0.0
            for od in range(d_covers[0, d], d_covers[1, d]):
                for oh in range(h_covers[0, h], h_covers[1, h]):
                    row_scale = d_scales[od] * h_scales[oh]
                    source = grad_output[n, c, od, oh]
                    for ow in range(out_width):
                        combined[ow] += source[ow] * (row_scale * w_scales[ow])
            target = grad_input[n, c, d, h]
            for w in range(width):
                # Most positions have one or two covering windows (kernel <= 2 * stride): take
                # them branch-free, then loop over any further ones, in window order throughout.
                first = min(w_covers[0, w], out_width)
                count = w_covers[1, w] - w_covers[0, w]
                total = (combined[first] if count > 0 else 0.0) + (combined[first + 1] if count > 1 else 0.0)
                for ow in range(first + 2, first + count):
                    total += combined[ow]
                target[w] = total


@njit(**KERNEL_OPTIONS)
def avg_pool_backward_channels_last(grad_output, covers, scales, grad_input):
    """``avg_pool_backward`` on (N, D, H, W, C) views, gathering all channels at once."""
    batch, depth, height, width, channels = grad_input.shape
    d_covers, h_covers, w_covers = covers
    d_scales, h_scales, w_scales = scales
    for row in prange(batch * depth * height):
        n, _, d, h = unravel_row(row, 1, depth, height)
        totals = np.empty(channels, np.float64)
        column = np.empty(channels, np.float64)
        for w in range(width):
            totals[:] = 0.0
            # The channels-first kernel's order (identical sums in both layouts): each covering
            # window column's scaled gradients summed over its rows, then the columns in order.
            for ow in range(w_covers[0, w], w_covers[1, w]):
                column[:] = 0.0
                for od in range(d_covers[0, d], d_covers[1, d]):
                    for oh in range(h_covers[0, h], h_covers[1, h]):
                        scale = d_scales[od] * h_scales[oh] * w_scales[ow]
                        source = grad_output[n, od, oh, ow]
                        for c in range(channels):
                            column[c] += source[c] * scale
                for c in range(channels):
                    totals[c] += column[c]
            target = grad_input[n, d, h, w]
            for c in range(channels):
                target[c] = totals[c]
