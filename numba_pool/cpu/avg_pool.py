"""Average pooling on the CPU: forward, and backward as a gather over covering windows.

The divisor of a window is a product of one factor per axis (the window's
size along that axis, counted with or without padding), so the caller passes
``scales``: one array per axis of 1 / factor (0 for an empty window, and the
``divisor_override`` folded into the last axis). Sums are accumulated in float64.
"""

import numpy as np
from numba import config, njit, prange

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


def avg_pool_forward_channels_last(x, kernel, stride, padding, scales, out):
    """``avg_pool_forward`` on (N, D, H, W, C) views, summing all channels at once.

    A Python wrapper: the kernel's column sums live in scratch allocated here,
    one (W, C) buffer per block of output rows (an allocation failure inside a
    parallel loop would surface as a SystemError).
    """
    rows = x.shape[0] * out.shape[1] * out.shape[2]
    blocks = _blocks_for_scratch(rows)
    columns = np.empty((blocks, x.shape[3], x.shape[4]), np.float64)
    totals = np.empty((blocks, x.shape[4]), np.float64)
    _avg_forward_channels_last(x, kernel, stride, padding, scales, columns, totals, out)


@njit(inline="always", cache=True)
def _sum_window_from_input(first_row, second_row, last_row, rows, w, kernel_w, scale, target):
    """target = scale * the sum of a window of 2 or 3 rows (``last_row`` is the third) by 2 or 3 columns at w.

    The order of the column-sum kernel: each column is 0 plus its rows in order,
    then the columns left to right. Four loops, so each one vectorises over channels.
    """
    if rows == 2 and kernel_w == 2:
        for c in range(target.shape[0]):
            left = (0.0 + first_row[w, c]) + second_row[w, c]
            right = (0.0 + first_row[w + 1, c]) + second_row[w + 1, c]
            target[c] = (left + right) * scale
    elif rows == 2:
        for c in range(target.shape[0]):
            left = (0.0 + first_row[w, c]) + second_row[w, c]
            middle = (0.0 + first_row[w + 1, c]) + second_row[w + 1, c]
            right = (0.0 + first_row[w + 2, c]) + second_row[w + 2, c]
            target[c] = ((left + middle) + right) * scale
    elif kernel_w == 2:
        for c in range(target.shape[0]):
            left = ((0.0 + first_row[w, c]) + second_row[w, c]) + last_row[w, c]
            right = ((0.0 + first_row[w + 1, c]) + second_row[w + 1, c]) + last_row[w + 1, c]
            target[c] = (left + right) * scale
    else:
        for c in range(target.shape[0]):
            left = ((0.0 + first_row[w, c]) + second_row[w, c]) + last_row[w, c]
            middle = ((0.0 + first_row[w + 1, c]) + second_row[w + 1, c]) + last_row[w + 1, c]
            right = ((0.0 + first_row[w + 2, c]) + second_row[w + 2, c]) + last_row[w + 2, c]
            target[c] = ((left + middle) + right) * scale


def _blocks_for_scratch(rows):
    """One block of rows per thread Numba may use: scratch stays small and in cache."""
    return max(1, min(rows, config.NUMBA_NUM_THREADS))


@njit(**KERNEL_OPTIONS)
def _avg_forward_channels_last(x, kernel, stride, padding, scales, columns, totals, out):
    """Per output row: every input column summed once over the window's rows, then each window sums its columns.

    The channels-first kernel's order, so both layouts give identical sums: a
    column is 0 plus its rows in order; an interior window starts from its first
    column, a window reaching into the padding from 0.
    """
    batch, depth, height, width, channels = x.shape
    out_depth, out_height, out_width = out.shape[1], out.shape[2], out.shape[3]
    d_scales, h_scales, w_scales = scales
    kernel_w, stride_w = kernel[2], stride[2]
    interior_first, interior_stop = interior_windows(out_width, width, kernel_w, stride_w, padding[2], 1)
    rows = batch * out_depth * out_height
    blocks = columns.shape[0]
    for block in prange(blocks):
        column_sums, window_sum = columns[block], totals[block]
        for row in range((block * rows) // blocks, ((block + 1) * rows) // blocks):
            n, _, od, oh = unravel_row(row, 1, out_depth, out_height)
            d_first, d_stop, _ = window_extent(od * stride[0] - padding[0], kernel[0], depth, padding[0])
            h_first, h_stop, _ = window_extent(oh * stride[1] - padding[1], kernel[1], height, padding[1])
            image = x[n]
            row_scale = d_scales[od] * h_scales[oh]
            h_taps = h_stop - h_first
            skip_from, skip_to = 0, 0  # input columns no window below reads
            interior_done = False
            if d_stop - d_first == 1 and 2 <= h_taps <= 3 and 2 <= kernel_w <= 3:
                # The common 2-D windows: interior windows summed straight from the input, one pass each;
                # the column sums below serve only the windows reaching into the padding.
                plane = image[d_first]
                first_row, second_row, last_row = plane[h_first], plane[h_first + 1], plane[h_stop - 1]
                for ow in range(interior_first, interior_stop):
                    w = ow * stride_w - padding[2]
                    scale = row_scale * w_scales[ow]
                    _sum_window_from_input(first_row, second_row, last_row, h_taps, w, kernel_w, scale, out[n, od, oh, ow])
                interior_done = True
                left_end = (interior_first - 1) * stride_w - padding[2] + kernel_w if interior_first > 0 else 0
                right_start = interior_stop * stride_w - padding[2] if interior_stop < out_width else width
                skip_from = max(0, min(width, left_end))
                skip_to = max(skip_from, min(width, right_start))
            for w in range(width):
                if skip_from <= w < skip_to:
                    continue
                column = column_sums[w]
                column[:] = 0.0
                for d in range(d_first, d_stop):
                    for h in range(h_first, h_stop):
                        source = image[d, h, w]
                        for c in range(channels):
                            column[c] += source[c]
            for ow in range(out_width):
                if interior_done and interior_first <= ow < interior_stop:
                    continue
                w_first, w_stop, _ = window_extent(ow * stride_w - padding[2], kernel_w, width, padding[2])
                if interior_first <= ow < interior_stop:
                    window_sum[:] = column_sums[w_first]
                    w_first += 1
                else:
                    window_sum[:] = 0.0
                for w in range(w_first, w_stop):
                    column = column_sums[w]
                    for c in range(channels):
                        window_sum[c] += column[c]
                scale = row_scale * w_scales[ow]
                target = out[n, od, oh, ow]
                for c in range(channels):
                    target[c] = window_sum[c] * scale


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
