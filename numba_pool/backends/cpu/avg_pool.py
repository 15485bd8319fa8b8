"""Average pooling on the CPU: forward, and backward as a gather over covering windows.

The divisor of a window is a product of one factor per axis (the window's
size along that axis, counted with or without padding), so the caller passes
``scales``: one array per axis of 1 / factor (0 for an empty window, and the
``divisor_override`` folded into the last axis). Sums are accumulated in float64.

About 480 lines: a forward and a backward kernel per memory layout, each
specialised for the common small windows; they share the scaling rule above.
"""

import math

import numpy as np
from numba import config, njit, prange

from ._common import (
    BLOCK_OPTIONS,
    KERNEL_OPTIONS,
    copy_row,
    in_kernel_layout,
    interior_windows,
    next_row,
    row_blocks,
    unravel_row,
    window_extent,
)


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
def _forward_channels_first(x, kernel, stride, padding, scales, blocks, out):
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


def _forward_channels_last(x, kernel, stride, padding, scales, out):
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
    d_scales, h_scales, w_scales = scales  # unpacked here: a parallel loop takes no tuple of arrays
    for block in prange(columns.shape[0]):  # np.int64: range's index type, so the twin shares the signature
        _forward_channels_last_block(x, kernel, stride, padding, d_scales, h_scales, w_scales, columns, totals, out,
                                     np.int64(block))


@njit(**BLOCK_OPTIONS)
def _forward_channels_last_block(x, kernel, stride, padding, d_scales, h_scales, w_scales, columns, totals, out, block):
    """The rows of one block of ``_avg_forward_channels_last`` (see ``BLOCK_OPTIONS``)."""
    batch, depth, height, width, channels = x.shape
    out_depth, out_height, out_width = out.shape[1], out.shape[2], out.shape[3]
    kernel_w, stride_w = kernel[2], stride[2]
    interior_first, interior_stop = interior_windows(out_width, width, kernel_w, stride_w, padding[2], 1)
    rows = batch * out_depth * out_height
    blocks = columns.shape[0]
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
                copy_row(column_sums[w_first], window_sum)
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


def _backward_channels_first(grad_output, covers, scales, blocks, grad_input):
    """Each input element gathers grad * scale from every window that covers it.

    A Python wrapper: the kernel's per-block row of combined gradients is
    allocated here (an allocation failure inside a parallel loop would surface
    as a SystemError). ``covers`` holds per axis the precomputed range of
    windows covering each position; the rows are split into ``blocks``.
    """
    # Two zeros past the end let the first two covering windows be read without bounds checks.
    combined = np.zeros((max(blocks, 1), grad_output.shape[4] + 2), np.float64)
    _avg_backward_channels_first(grad_output, covers, scales, combined, grad_input)


@njit(inline="always", cache=True)
def _same_row_windows(d_covers, h_covers, d, h, previous_d, previous_h):
    """Whether input rows (d, h) and (previous_d, previous_h) are covered by the same windows."""
    return (
        d_covers[0, d] == d_covers[0, previous_d] and d_covers[1, d] == d_covers[1, previous_d]
        and h_covers[0, h] == h_covers[0, previous_h] and h_covers[1, h] == h_covers[1, previous_h]
    )


@njit(inline="always", cache=True)
def _combine_covering_rows(grad_output, n, c, d_range, h_range, d_scales, h_scales, w_scales, combined):
    """combined[ow] = 0 + the scaled gradients of the windows (od, oh, ow) covering one input row, in window order."""
    out_width = grad_output.shape[4]
    started = False
    for od in range(d_range[0], d_range[1]):
        for oh in range(h_range[0], h_range[1]):
            row_scale = d_scales[od] * h_scales[oh]
            source = grad_output[n, c, od, oh]
            if started:
                for ow in range(out_width):
                    combined[ow] += source[ow] * (row_scale * w_scales[ow])
            else:  # the first row starts from 0 (not from a zero-filled buffer: one pass less)
                for ow in range(out_width):
                    combined[ow] = 0.0 + source[ow] * (row_scale * w_scales[ow])
                started = True
    if not started:
        combined[:out_width] = 0.0


@njit(inline="always", cache=True)
def _gather_positions(combined, w_covers, first_w, stop_w, target):
    """target[w] = the sum of combined over the windows covering w, in window order, for w in [first_w, stop_w)."""
    out_width = combined.shape[0] - 2
    for w in range(first_w, stop_w):
        # Most positions have one or two covering windows (kernel <= 2 * stride): take
        # them branch-free, then loop over any further ones, in window order throughout.
        first = min(w_covers[0, w], out_width)
        count = w_covers[1, w] - w_covers[0, w]
        total = (combined[first] if count > 0 else 0.0) + (combined[first + 1] if count > 1 else 0.0)
        for ow in range(first + 2, first + count):
            total += combined[ow]
        target[w] = total


@njit(cache=True)
def _stride_two_run(w_covers):
    """The widest run of position pairs (w0 + 2i, w0 + 2i + 1), i < pairs, that the stride-2 interior shapes.

    Both positions of pair i are covered by the windows ending at q0 + i: the even one by
    ``even_count`` of them, the odd one by ``odd_count`` (1 or 2 each: kernels 2 to 4).
    Found by checking every position of the covers, so any other pattern gives pairs == 0.
    Returns (w0, q0, pairs, even_count, odd_count).
    """
    width = w_covers.shape[1]
    if width < 4:
        return 0, 0, 0, 1, 1
    middle = width // 2 - 1
    if w_covers[1, middle] != w_covers[1, middle + 1]:  # pairs start one position further on
        middle += 1
    even_count = w_covers[1, middle] - w_covers[0, middle]
    odd_count = w_covers[1, middle + 1] - w_covers[0, middle + 1]
    if not (1 <= even_count <= 2 and 1 <= odd_count <= 2):
        return 0, 0, 0, 1, 1
    w0, q0 = middle, w_covers[1, middle] - 1
    while w0 >= 2 and _is_stride_two_pair(w_covers, w0 - 2, q0 - 1, even_count, odd_count):
        w0, q0 = w0 - 2, q0 - 1
    w_stop = middle
    while w_stop + 1 < width and _is_stride_two_pair(w_covers, w_stop, q0 + (w_stop - w0) // 2, even_count, odd_count):
        w_stop += 2
    return w0, q0, (w_stop - w0) // 2, even_count, odd_count


@njit(inline="always", cache=True)
def _is_stride_two_pair(w_covers, w, q, even_count, odd_count):
    return (
        w_covers[1, w] == q + 1 and w_covers[0, w] == q + 1 - even_count
        and w_covers[1, w + 1] == q + 1 and w_covers[0, w + 1] == q + 1 - odd_count
    )


@njit(inline="always", cache=True)
def _gather_stride_two_pairs(combined, q0, pairs, even_count, odd_count, target):
    """``_gather_positions`` over a ``_stride_two_run``: contiguous loads, one loop per window pattern (vectorised).

    ``target`` starts at the run's first position. A position with one window takes
    it unchanged, as ``_gather_positions`` does (x + 0 == x: the sums are never -0).
    """
    latest = combined[q0:q0 + pairs]
    earlier = combined[max(q0 - 1, 0):max(q0 - 1, 0) + pairs]  # read only when a position has two windows (q0 >= 1)
    if even_count == 1 and odd_count == 1:  # kernel 2
        for i in range(pairs):
            target[2 * i] = latest[i]
            target[2 * i + 1] = latest[i]
    elif even_count == 2 and odd_count == 1:  # kernel 3
        for i in range(pairs):
            target[2 * i] = earlier[i] + latest[i]
            target[2 * i + 1] = latest[i]
    elif even_count == 1:
        for i in range(pairs):
            target[2 * i] = latest[i]
            target[2 * i + 1] = earlier[i] + latest[i]
    else:  # kernel 4
        for i in range(pairs):
            target[2 * i] = earlier[i] + latest[i]
            target[2 * i + 1] = earlier[i] + latest[i]


@njit(**KERNEL_OPTIONS)
def _avg_backward_channels_first(grad_output, covers, scales, scratch, grad_input):
    """``avg_pool_backward``'s kernel: per input row, the gradient rows of the covering windows are
    combined into one scaled row (a vectorised pass over the output width); each input element
    then sums the entries of the windows covering it. A row covered by the same windows as the
    row before it is a copy of that row. Every element is written exactly once, by one thread:
    no zero fill, no atomics.
    """
    d_covers, h_covers, w_covers = covers  # unpacked here: a parallel loop takes no tuple of arrays
    d_scales, h_scales, w_scales = scales
    w0, q0, pairs, even_count, odd_count = _stride_two_run(w_covers)
    for block in prange(scratch.shape[0]):  # np.int64: range's index type, so the twin shares the signature
        _backward_channels_first_block(grad_output, d_covers, h_covers, w_covers, d_scales, h_scales, w_scales,
                                       w0, q0, pairs, even_count, odd_count, scratch, grad_input, np.int64(block))


@njit(**BLOCK_OPTIONS)
def _backward_channels_first_block(grad_output, d_covers, h_covers, w_covers, d_scales, h_scales, w_scales,
                                   w0, q0, pairs, even_count, odd_count, scratch, grad_input, block):
    """The rows of one block of ``_avg_backward_channels_first`` (see ``BLOCK_OPTIONS``); ``w0`` to
    ``odd_count``: the stride-2 run of ``w_covers`` (``_stride_two_run``)."""
    batch, channels, depth, height, width = grad_input.shape
    rows = batch * channels * depth * height
    blocks = scratch.shape[0]
    combined = scratch[block]
    first_row, stop_row = block * rows // blocks, (block + 1) * rows // blocks
    if first_row >= stop_row:
        return
    n, c, d, h = unravel_row(first_row, channels, depth, height)
    for row in range(first_row, stop_row):
        target = grad_input[n, c, d, h]
        if row > first_row and h > 0 and _same_row_windows(d_covers, h_covers, d, h, d, h - 1):
            previous = grad_input[n, c, d, h - 1]  # written by this block just before
            for w in range(width):  # an explicit loop: vectorised, without a slice copy's overlap check
                target[w] = previous[w]
        else:
            _combine_covering_rows(
                grad_output, n, c, d_covers[:, d], h_covers[:, h], d_scales, h_scales, w_scales, combined
            )
            _gather_positions(combined, w_covers, 0, w0, target)
            _gather_stride_two_pairs(combined, q0, pairs, even_count, odd_count, target[w0:w0 + 2 * pairs])
            _gather_positions(combined, w_covers, w0 + 2 * pairs, width, target)
        n, c, d, h = next_row(n, c, d, h, channels, depth, height)


def _backward_channels_last(grad_output, covers, scales, grad_input):
    """``avg_pool_backward`` on (N, D, H, W, C) views, gathering all channels at once.

    A Python wrapper: the kernel's per-window column sums live in scratch
    allocated here, one (output width, C) buffer per block of input rows.
    """
    rows = grad_input.shape[0] * grad_input.shape[1] * grad_input.shape[2]
    blocks = _blocks_for_scratch(rows)
    columns = np.empty((blocks, grad_output.shape[3], grad_output.shape[4]), np.float64)
    _avg_backward_channels_last(grad_output, covers, scales, columns, grad_input)


@njit(**KERNEL_OPTIONS)
def _avg_backward_channels_last(grad_output, covers, scales, columns, grad_input):
    """Per input row: each window column's scaled gradients summed once over the covering rows,
    then each input column sums the columns of its windows.

    The channels-first kernel's order, so both layouts give identical sums: a
    window column is 0 plus its rows in order, an input column its windows'
    columns in window order. A row covered by the same windows as the row before
    it is a copy of that row.
    """
    d_covers, h_covers, w_covers = covers  # unpacked here: a parallel loop takes no tuple of arrays
    d_scales, h_scales, w_scales = scales
    for block in prange(columns.shape[0]):  # np.int64: range's index type, so the twin shares the signature
        _backward_channels_last_block(grad_output, d_covers, h_covers, w_covers, d_scales, h_scales, w_scales, columns,
                                      grad_input, np.int64(block))


@njit(**BLOCK_OPTIONS)
def _backward_channels_last_block(grad_output, d_covers, h_covers, w_covers, d_scales, h_scales, w_scales, columns,
                                  grad_input, block):
    """The rows of one block of ``_avg_backward_channels_last`` (see ``BLOCK_OPTIONS``)."""
    batch, depth, height, width, channels = grad_input.shape
    out_width = grad_output.shape[3]
    rows = batch * depth * height
    blocks = columns.shape[0]
    window_columns = columns[block]
    for row in range((block * rows) // blocks, ((block + 1) * rows) // blocks):
        n, _, d, h = unravel_row(row, 1, depth, height)
        if row > (block * rows) // blocks and h > 0 and _same_row_windows(d_covers, h_covers, d, h, d, h - 1):
            for w in range(width):  # written by this block just before
                copy_row(grad_input[n, d, h - 1, w], grad_input[n, d, h, w])
            continue
        for ow in range(out_width):
            column = window_columns[ow]
            column[:] = 0.0
            for od in range(d_covers[0, d], d_covers[1, d]):
                for oh in range(h_covers[0, h], h_covers[1, h]):
                    scale = d_scales[od] * h_scales[oh] * w_scales[ow]
                    source = grad_output[n, od, oh, ow]
                    for c in range(channels):
                        column[c] += source[c] * scale
        for w in range(width):
            target = grad_input[n, d, h, w]
            first, stop = w_covers[0, w], w_covers[1, w]
            if stop - first == 1:  # 0 + column == column: the column sums are never -0
                copy_row(window_columns[first], target)
            elif stop == first:
                target[:] = 0.0
            elif stop - first == 2:
                earlier, latest = window_columns[first], window_columns[first + 1]
                for c in range(channels):
                    target[c] = earlier[c] + latest[c]
            else:
                for c in range(channels):
                    total = window_columns[first, c]
                    for ow in range(first + 1, stop):
                        total += window_columns[ow, c]
                    target[c] = total


# --------------------------------------------------------------------------- the backend contract
# Entries of ops.avg_pool.Kernels: canonical (N, C, D, H, W) views in. The CPU picks its kernel here: the channels-last kernels
# when the channels are innermost in memory (``in_kernel_layout``), the channels-first ones otherwise.


def avg_pool_forward(x, window, scales, out):
    """Each window's sum times its per-axis ``scales`` (whose product is 1 / divisor) into ``out``.

    ``window`` is (kernel, stride, padding), three ints each.
    """
    last, (x, out) = in_kernel_layout(x, x, out)
    if last:
        _forward_channels_last(x, *window, scales, out)
    else:
        _forward_channels_first(x, *window, scales, row_blocks(math.prod(out.shape[:4])), out)


def avg_pool_backward(grad_output, covers, scales, grad_input):
    """Each input element gathers the scaled gradients of the windows ``covers`` says contain it."""
    last, (grad_output, grad_input) = in_kernel_layout(grad_input, grad_output, grad_input)
    if last:
        _backward_channels_last(grad_output, covers, scales, grad_input)
    else:
        _backward_channels_first(grad_output, covers, scales, row_blocks(math.prod(grad_input.shape[:4])), grad_input)


__all__ = ["avg_pool_backward", "avg_pool_forward"]
