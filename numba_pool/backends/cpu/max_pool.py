"""Max pooling on the CPU: forward with optional argmax, backward routed by the argmax.

Two memory layouts: ``(N, C, D, H, W)`` views, where each thread walks output
rows of one plane, and channels-last ``(N, D, H, W, C)`` views, where the
innermost loop runs over the contiguous channels and vectorises.

About 690 lines, the longest module: three forward kernels (separable rows,
direct small windows, channels-last) and the routed backward, each tuned and
measured against the others (bench/RESULTS.md); they share the NaN-aware
maximum of ``..rules`` and the scratch rules written here.
"""

import math

import numpy as np
from numba import njit, prange

from ._common import (
    BLOCK_OPTIONS,
    copy_row,
    KERNEL_OPTIONS,
    NO_INDICES,
    beats_maximum,
    flat_plane_index,
    in_kernel_layout,
    interior_windows,
    next_row,
    plane_position,
    replaces_seeded_maximum,
    row_blocks,
    unravel_row,
    valid_taps,
)


# Scratch columns per block of rows: the column maxima of one tile of an output
# row (or one chunk of a window wider than that), so scratch memory stays a few
# cache-sized buffers per block whatever the row length.
TILE_COLUMNS = 2048


@njit(inline="always", cache=True)
def _fold_maxima(source, best_in, keys_in, best_out, keys_out, key, store_keys):
    """Fold a row of values, met after the running maxima ``best_in`` in window order, into
    element-wise maxima written to ``best_out``, noting ``key`` where a value wins
    (``replaces_maximum``: a larger value or any NaN); other keys are copied from ``keys_in``.

    Used for input rows against per-column maxima (channels-first) and for one window element's
    channels against per-channel maxima (channels-last). ``*_out`` may be ``*_in`` (in place), but
    other buffers keep the selects plain vector stores: an in-place select becomes a masked store
    (vmaskmovps), which is slow on AMD processors.
    """
    if store_keys:  # two loops, not a test per element: the loops must stay branch-free to vectorise
        for c in range(source.shape[0]):
            value = source[c]
            current = best_in[c]
            replace = replaces_seeded_maximum(value, current)
            best_out[c] = value if replace else current
            keys_out[c] = key if replace else keys_in[c]
    else:
        for c in range(source.shape[0]):
            value = source[c]
            current = best_in[c]
            replace = replaces_seeded_maximum(value, current)
            best_out[c] = value if replace else current


@njit(inline="always", cache=True)
def _fold_into_maxima(source, best, keys, key, store_keys):
    """``_fold_maxima`` in place."""
    _fold_maxima(source, best, keys, best, keys, key, store_keys)


@njit(inline="always", cache=True)
def _reduce_window_scalar(best, keys, local_start, base, w_first, w_stop, dilation, width):
    """(maximum, flat index) of one window over the column maxima (border windows).

    Column ``w`` of the plane sits at ``w - base`` in the buffers; ``local_start``
    is the window's start there.
    """
    local = local_start + w_first * dilation
    value = best[local]
    flat = keys[local] * width + local + base
    for k in range(w_first + 1, w_stop):
        local = local_start + k * dilation
        candidate = best[local]
        candidate_flat = keys[local] * width + local + base
        if beats_maximum(candidate, candidate_flat, value, flat):
            value = candidate
            flat = candidate_flat
    return value, flat


@njit(inline="always", cache=True)
def _reduce_interior(best, keys, out_row, index_row, first, stop, kernel, stride, offset, base, dilation, width, store_indices):
    """Windows first..stop-1, which lie wholly inside the buffers, reduced tap by tap across all windows.

    Window ``ow`` starts at ``ow * stride + offset`` in the buffers, which hold
    plane columns from ``base`` on. Branch-free selects over contiguous output
    rows, so the loops vectorise. Column maxima come from different rows, so
    ties and NaNs are decided by flat index (``beats_maximum``).
    """
    if first >= stop:  # no interior window (a kernel wider than the input): skip the tap loop, O(kernel)
        return
    for ow in range(first, stop):
        w = ow * stride + offset
        out_row[ow] = best[w]
        if store_indices:
            index_row[ow] = keys[w] * width + w + base
    for k in range(1, kernel):
        tap = offset + k * dilation
        if store_indices:
            for ow in range(first, stop):
                w = ow * stride + tap
                candidate = best[w]
                value = out_row[ow]
                candidate_flat = keys[w] * width + w + base
                replace = beats_maximum(candidate, candidate_flat, value, index_row[ow])
                out_row[ow] = candidate if replace else value
                index_row[ow] = candidate_flat if replace else index_row[ow]
        else:
            for ow in range(first, stop):
                candidate = best[ow * stride + tap]
                value = out_row[ow]
                replace = replaces_seeded_maximum(candidate, value)
                out_row[ow] = candidate if replace else value


@njit(inline="always", cache=True)
def _fold_rows(plane, best, keys, d_start, d_first, d_stop, h_start, h_first, h_stop, dilation, height, columns, store_keys):
    """Per-column maxima of the window's rows over the plane columns ``columns`` (a slice),
    written to the front of ``best`` and ``keys`` (keys: d * height + h of each maximum)."""
    d = d_start + d_first * dilation[0]
    h = h_start + h_first * dilation[1]
    count = plane[d, h, columns].shape[0]
    best_part, keys_part = best[:count], keys[:count]
    copy_row(plane[d, h, columns], best_part)  # the first row seeds every column
    keys_part[:] = d * height + h
    for i in range(d_first, d_stop):
        d = d_start + i * dilation[0]
        for j in range(h_first, h_stop):
            h = h_start + j * dilation[1]
            _fold_into_maxima(plane[d, h, columns], best_part, keys_part, d * height + h, store_keys)


@njit(inline="always", cache=True)
def _pool_tile(plane, best, keys, out_row, index_row, tile_first, tile_stop, interior_first, interior_stop,
               d_start, d_first, d_stop, h_start, h_first, h_stop, kernel, stride, padding, dilation, store_indices):
    """Output columns tile_first..tile_stop-1 of one row, from the column maxima of their input span."""
    height, width = plane.shape[1], plane.shape[2]
    kernel_w, stride_w, padding_w, dilation_w = kernel[2], stride[2], padding[2], dilation[2]
    base = max(0, tile_first * stride_w - padding_w)
    span_stop = min(width, (tile_stop - 1) * stride_w - padding_w + (kernel_w - 1) * dilation_w + 1)
    _fold_rows(plane, best, keys, d_start, d_first, d_stop, h_start, h_first, h_stop, dilation, height,
               slice(base, span_stop), store_indices)
    for border in range(2):  # the windows that reach into the padding, one by one
        first, stop = (tile_first, min(tile_stop, interior_first)) if border == 0 else (max(tile_first, interior_stop), tile_stop)
        for ow in range(first, stop):
            w_start = ow * stride_w - padding_w
            w_first, w_stop = valid_taps(w_start, kernel_w, dilation_w, width)
            value, flat = _reduce_window_scalar(best, keys, w_start - base, base, w_first, w_stop, dilation_w, width)
            out_row[ow] = value
            if store_indices:
                index_row[ow] = flat
    first, stop = max(tile_first, interior_first), min(tile_stop, interior_stop)
    if stride_w == 2 and dilation_w == 1:  # the common case, with constants the compiler can vectorise
        _reduce_interior(best, keys, out_row, index_row, first, stop, kernel_w, 2, -padding_w - base, base, 1, width, store_indices)
    else:
        _reduce_interior(
            best, keys, out_row, index_row, first, stop, kernel_w, stride_w, -padding_w - base, base, dilation_w, width, store_indices
        )


@njit(inline="always", cache=True)
def _wide_window_maximum(plane, best, keys, w_start, d_start, d_first, d_stop, h_start, h_first, h_stop, kernel, dilation):
    """(maximum, flat index) of a window wider than the buffers: its taps in chunks of the buffers' length,
    each chunk's column maxima folded into the running result (global max pooling of long rows)."""
    height, width = plane.shape[1], plane.shape[2]
    dilation_w = dilation[2]
    w_first, w_stop = valid_taps(w_start, kernel[2], dilation_w, width)
    chunk = best.shape[0]
    value = plane[d_start + d_first * dilation[0], h_start + h_first * dilation[1], w_start + w_first * dilation_w]
    flat = flat_plane_index(d_start + d_first * dilation[0], h_start + h_first * dilation[1], w_start + w_first * dilation_w, height, width)
    for chunk_first in range(w_first, w_stop, chunk):
        count = min(chunk, w_stop - chunk_first)
        column = w_start + chunk_first * dilation_w
        columns = slice(column, column + (count - 1) * dilation_w + 1, dilation_w)
        _fold_rows(plane, best, keys, d_start, d_first, d_stop, h_start, h_first, h_stop, dilation, height, columns, True)
        for j in range(count):
            candidate_flat = keys[j] * width + column + j * dilation_w
            if beats_maximum(best[j], candidate_flat, value, flat):
                value = best[j]
                flat = candidate_flat
    return value, flat


@njit(**KERNEL_OPTIONS)
def _max_pool_forward_kernel(x, kernel, stride, padding, dilation, out, indices, store_indices, best_scratch, key_scratch):
    """``max_pool_forward`` with the scratch buffers given: one (columns,) row of each per block of rows."""
    for block in prange(best_scratch.shape[0]):  # np.int64: range's index type, so the twin shares the signature
        _separable_block(x, kernel, stride, padding, dilation, out, indices, store_indices, best_scratch, key_scratch,
                         np.int64(block))


@njit(**BLOCK_OPTIONS)
def _separable_block(x, kernel, stride, padding, dilation, out, indices, store_indices, best_scratch, key_scratch, block):
    """The rows of one block of ``_max_pool_forward_kernel`` (see ``BLOCK_OPTIONS``)."""
    batch, channels, depth, height, width = x.shape
    out_depth, out_height, out_width = out.shape[2], out.shape[3], out.shape[4]
    kernel_w, stride_w, dilation_w = kernel[2], stride[2], dilation[2]
    interior_first, interior_stop = interior_windows(out_width, width, kernel_w, stride_w, padding[2], dilation_w)
    columns = best_scratch.shape[1]
    if width <= columns:
        tile_outputs = out_width  # the whole row fits
    else:  # output columns whose input span fits the buffers; 0 when one window alone is wider
        tile_outputs = max(0, (columns - (kernel_w - 1) * dilation_w - 1) // stride_w + 1)
    blocks = best_scratch.shape[0]
    rows = batch * channels * out_depth * out_height
    best = best_scratch[block]
    keys = key_scratch[block]
    first_row = block * rows // blocks
    n, c, od, oh = unravel_row(first_row, channels, out_depth, out_height)
    for _ in range(first_row, (block + 1) * rows // blocks):
        plane = x[n, c]
        d_start = od * stride[0] - padding[0]
        h_start = oh * stride[1] - padding[1]
        d_first, d_stop = valid_taps(d_start, kernel[0], dilation[0], depth)
        h_first, h_stop = valid_taps(h_start, kernel[1], dilation[1], height)
        out_row = out[n, c, od, oh]
        index_row = indices[n, c, od, oh] if store_indices else indices[0, 0, 0, 0]
        if tile_outputs > 0:
            for tile_first in range(0, out_width, tile_outputs):
                _pool_tile(
                    plane, best, keys, out_row, index_row, tile_first, min(out_width, tile_first + tile_outputs),
                    interior_first, interior_stop, d_start, d_first, d_stop, h_start, h_first, h_stop,
                    kernel, stride, padding, dilation, store_indices,
                )
        else:
            for ow in range(out_width):
                value, flat = _wide_window_maximum(
                    plane, best, keys, ow * stride_w - padding[2], d_start, d_first, d_stop, h_start, h_first, h_stop,
                    kernel, dilation,
                )
                out_row[ow] = value
                if store_indices:
                    index_row[ow] = flat
        n, c, od, oh = next_row(n, c, od, oh, channels, out_depth, out_height)


# --------------------------------------------------------------------------- channels-first, small 2-D windows

# The direct kernel takes windows of at most this many taps (k2s2, k3s2, ...); larger
# windows (global pooling among them) keep the separable kernel above.
DIRECT_MAX_TAPS = 16
# With indices, rows of fewer outputs than this run faster through the separable kernel: the direct
# kernel's per-row cost (setting up runs of 8 windows) outweighs its gain on rows of 14 (28 x 28 input).
DIRECT_INDEXED_MIN_OUTPUTS = 16

# Rows are reduced in runs of neighbouring windows, tap by tap across the run. Runs are a multiple
# of LANES (8: a float32 ymm register) long, the last one overlapping the one before, so that LLVM's
# vector loop does all the work: its scalar remainder loop, with data-dependent branches, would
# cost more than the vector work on short rows. Runs longer than RUN_CAPACITY are cut.
LANES = 8
RUN_CAPACITY = 64 * LANES


@njit(inline="always", cache=True)
def _at(first, k, stride):
    """``first + k * stride`` as an unsigned index: Numba then skips its negative-index wraparound, so the
    loads stay plain (de-interleaved for stride 2). Callers pass non-negative positions."""
    return np.uint64(first + k * stride)


# The running maxima of a block live in two buffers, read from one and written to the other tap
# after tap: a select stored in place would become a masked store (slow on AMD).


@njit(inline="always", cache=True)
def _seed_taps(plane, h, w0, stride, best_out, keys_out, count, tap, two, store_keys):
    """Seed the block's windows from their first tap (window k reads ``plane[h, w0 + k * stride]``), then
    fold in the next tap of the row when ``two``.

    Each branch has its own loop, so no loop tests a flag per element.
    """
    next_tap = np.int32(tap + 1)
    if two and store_keys:  # both loads in one loop: for stride 2 they are one de-interleaved pair of vector loads
        for k in range(count):
            first, second = plane[h, _at(w0, k, stride)], plane[h, _at(w0 + 1, k, stride)]
            replace = replaces_seeded_maximum(second, first)
            best_out[k] = second if replace else first
            keys_out[k] = next_tap if replace else tap
    elif two:
        for k in range(count):
            first, second = plane[h, _at(w0, k, stride)], plane[h, _at(w0 + 1, k, stride)]
            best_out[k] = second if replaces_seeded_maximum(second, first) else first
    else:
        for k in range(count):
            best_out[k] = plane[h, _at(w0, k, stride)]
            if store_keys:
                keys_out[k] = tap


@njit(inline="always", cache=True)
def _fold_taps(plane, h, w0, stride, best_in, keys_in, best_out, keys_out, count, tap, two, store_keys):
    """Fold one tap (two neighbouring taps when ``two``), met after the running maxima in window order."""
    next_tap = np.int32(tap + 1)
    if two and store_keys:
        for k in range(count):
            first, second = plane[h, _at(w0, k, stride)], plane[h, _at(w0 + 1, k, stride)]
            best = best_in[k]
            replace = replaces_seeded_maximum(first, best)
            best = first if replace else best
            key = tap if replace else keys_in[k]
            replace = replaces_seeded_maximum(second, best)
            best_out[k] = second if replace else best
            keys_out[k] = next_tap if replace else key
    elif two:
        for k in range(count):
            first, second = plane[h, _at(w0, k, stride)], plane[h, _at(w0 + 1, k, stride)]
            best = best_in[k]
            best = first if replaces_seeded_maximum(first, best) else best
            best_out[k] = second if replaces_seeded_maximum(second, best) else best
    elif store_keys:
        for k in range(count):
            value = plane[h, _at(w0, k, stride)]
            best = best_in[k]
            replace = replaces_seeded_maximum(value, best)
            best_out[k] = value if replace else best
            keys_out[k] = tap if replace else keys_in[k]
    else:
        for k in range(count):
            value = plane[h, _at(w0, k, stride)]
            best = best_in[k]
            best_out[k] = value if replaces_seeded_maximum(value, best) else best


@njit(inline="always", cache=True)
def _direct_run(plane, buffers, count, w0, plane_offset, h_start, h_first, h_stop, kernel_w, stride_w, store_keys):
    """Running maxima of ``count`` neighbouring windows wholly inside the row span, the first starting at
    column ``w0``: taps in window order, each across all the windows at once. Returns the buffers
    (values, keys) holding the result.

    A tap's key is its flat plane index minus the window's start column, the same for every window
    (int32: the plane has fewer than 2**31 elements).
    """
    best_in, keys_in, best_out, keys_out = buffers
    width = plane.shape[1]
    for i in range(h_first, h_stop):
        h = h_start + i
        for j in range(0, kernel_w, 2):
            tap = np.int32(plane_offset + h * width + j)
            two = j + 1 < kernel_w
            if i == h_first and j == 0:
                _seed_taps(plane, h, w0 + j, stride_w, best_out, keys_out, count, tap, two, store_keys)
            else:
                _fold_taps(plane, h, w0 + j, stride_w, best_in, keys_in, best_out, keys_out, count, tap, two,
                           store_keys)
            best_in, keys_in, best_out, keys_out = best_out, keys_out, best_in, keys_in
    return best_in, keys_in


@njit(inline="always", cache=True)
def _direct_window_maximum(plane, h_start, h_first, h_stop, w_start, w_first, w_stop):
    """(maximum, flat index in ``plane``) of one window: its valid taps in window order (border windows,
    and rows with fewer than ``LANES`` interior windows)."""
    width = plane.shape[1]
    h = h_start + h_first
    w = w_start + w_first
    value = plane[h, w]
    flat = h * width + w
    for i in range(h_first, h_stop):
        h = h_start + i
        for j in range(w_first, w_stop):
            w = w_start + j
            candidate = plane[h, w]
            if replaces_seeded_maximum(candidate, value):
                value = candidate
                flat = h * width + w
    return value, flat


@njit(inline="always", cache=True)
def _direct_store_run(plane, buffers, out_row, index_row, ow, count, plane_offset, h_start, h_first, h_stop, kernel_w,
                      stride_w, padding_w, store_indices):
    """Windows ow..ow+count-1 of one output row, all wholly inside the row span, reduced as one run."""
    w0 = ow * stride_w - padding_w
    best, keys = _direct_run(plane, buffers, count, w0, plane_offset, h_start, h_first, h_stop, kernel_w, stride_w,
                             store_indices)
    for k in range(count):
        out_row[_at(ow, k, 1)] = best[k]
    if store_indices:
        for k in range(count):  # widened to the int64 flat index once, at the store
            index_row[_at(ow, k, 1)] = np.int64(keys[k]) + (w0 + k * stride_w)


@njit(inline="always", cache=True)
def _direct_row(plane, buffers, out_row, index_row, plane_offset, h_start, h_first, h_stop, kernel_w, stride_w,
                padding_w, interior_first, interior_stop, store_indices):
    """One output row from one input plane (a (H, W) slice starting at flat index ``plane_offset``):
    interior windows in runs, the others one by one."""
    width = plane.shape[1]
    count = interior_stop - interior_first
    if count < LANES:
        interior_first = interior_stop  # too few for a run: all windows one by one
    span = count - count % LANES
    full_runs = (span + RUN_CAPACITY - 1) // RUN_CAPACITY
    # The rest, as a run that overlaps the last one: the same values again. One call site for both
    # kinds of run: Numba copies an inlined function's code once per call site, at a compile-time cost.
    tail_runs = 1 if count % LANES and count >= LANES else 0
    for run in range(full_runs + tail_runs):
        if run < full_runs:
            run_first = interior_first + run * RUN_CAPACITY
            run_count = min(RUN_CAPACITY, span - run * RUN_CAPACITY)
        else:
            run_count = min(span, LANES)  # LANES, but not a constant to LLVM, which would unroll instead of vectorising
            run_first = interior_stop - run_count
        _direct_store_run(plane, buffers, out_row, index_row, run_first, run_count, plane_offset, h_start, h_first,
                          h_stop, kernel_w, stride_w, padding_w, store_indices)
    for side in range(2):
        first, stop = (0, interior_first) if side == 0 else (interior_stop, out_row.shape[0])
        for ow in range(first, stop):
            w_start = ow * stride_w - padding_w
            w_first, w_stop = valid_taps(w_start, kernel_w, 1, width)
            value, flat = _direct_window_maximum(plane, h_start, h_first, h_stop, w_start, w_first, w_stop)
            out_row[ow] = value
            if store_indices:
                index_row[ow] = flat + plane_offset


@njit(**KERNEL_OPTIONS)
def _max_pool_forward_direct(x, kernel, stride, padding, out, indices, store_indices, best_scratch, key_scratch):
    """``max_pool_forward`` for windows of depth 1, few taps, no dilation and stride_w 1 or 2.

    Taps come in window order, so the plain ``replaces_maximum`` select decides ties and NaNs;
    no flat-index comparisons are needed, unlike the separable kernel.
    """
    for block in prange(best_scratch.shape[0]):  # np.int64: range's index type, so the twin shares the signature
        _direct_block(x, kernel, stride, padding, out, indices, store_indices, best_scratch, key_scratch, np.int64(block))


@njit(**BLOCK_OPTIONS)
def _direct_block(x, kernel, stride, padding, out, indices, store_indices, best_scratch, key_scratch, block):
    """The rows of one block of ``_max_pool_forward_direct`` (see ``BLOCK_OPTIONS``)."""
    batch, channels, depth, height, width = x.shape
    out_depth, out_height, out_width = out.shape[2], out.shape[3], out.shape[4]
    kernel_h, kernel_w, stride_w, padding_w = kernel[1], kernel[2], stride[2], padding[2]
    interior_first, interior_stop = interior_windows(out_width, width, kernel_w, stride_w, padding_w, 1)
    blocks = best_scratch.shape[0]
    rows = batch * channels * out_depth * out_height
    buffers = (best_scratch[block, :RUN_CAPACITY], key_scratch[block, :RUN_CAPACITY],
               best_scratch[block, RUN_CAPACITY:], key_scratch[block, RUN_CAPACITY:])
    first_row = block * rows // blocks
    n, c, od, oh = unravel_row(first_row, channels, out_depth, out_height)
    for _ in range(first_row, (block + 1) * rows // blocks):
        d = od * stride[0]
        plane = x[n, c, d]
        h_start = oh * stride[1] - padding[1]
        h_first, h_stop = valid_taps(h_start, kernel_h, 1, height)
        out_row = out[n, c, od, oh]
        index_row = indices[n, c, od, oh] if store_indices else indices[0, 0, 0, 0]
        plane_offset = d * height * width  # flat indices count the (H, W) planes before this one
        if stride_w == 2:  # constant strides, so the loads vectorise (stride-2 loads de-interleave)
            _direct_row(plane, buffers, out_row, index_row, plane_offset, h_start, h_first, h_stop, kernel_w, 2,
                        padding_w, interior_first, interior_stop, store_indices)
        else:
            _direct_row(plane, buffers, out_row, index_row, plane_offset, h_start, h_first, h_stop, kernel_w, 1,
                        padding_w, interior_first, interior_stop, store_indices)
        n, c, od, oh = next_row(n, c, od, oh, channels, out_depth, out_height)


def _takes_direct_kernel(x, kernel, stride, padding, dilation):
    """Whether ``_max_pool_forward_direct`` serves this call (otherwise the separable kernel does)."""
    return (
        kernel[0] == 1
        and padding[0] == 0
        and dilation[1] == 1
        and dilation[2] == 1
        and kernel[1] * kernel[2] <= DIRECT_MAX_TAPS
        and stride[2] in (1, 2)
        and x.shape[2] * x.shape[3] * x.shape[4] < 2**31  # int32 keys
    )


def _forward_channels_first(x, kernel, stride, padding, dilation, blocks, out, indices, store_indices):
    """Write each window's maximum to ``out`` (and its flat plane index to ``indices``).

    PyTorch's rule (``replaces_maximum``): the first maximum in window order
    wins ties, and the last NaN in window order wins over any number, so NaN
    propagates. Padding is never visited: tap ranges are clipped to the input,
    and the first in-input element seeds each maximum (which also makes integer
    dtypes work).

    Separable: per output row, the window's input rows are first folded into
    per-column maxima (contiguous, vectorised), remembering for each column the
    row its maximum came from; then the windows reduce their columns, ties and
    NaNs decided by flat index. Rows are split into ``blocks``; long rows are
    cut into tiles of output columns whose input span fits ``TILE_COLUMNS``, so
    the scratch is at most ``blocks * TILE_COLUMNS`` columns whatever the input
    size. It is allocated here, not in the compiled kernel, so that a failed
    allocation raises MemoryError.
    """
    if _takes_direct_kernel(x, kernel, stride, padding, dilation) and (
        not store_indices or out.shape[4] >= DIRECT_INDEXED_MIN_OUTPUTS
    ):
        best_scratch = np.empty((blocks, 2 * RUN_CAPACITY), x.dtype)  # two halves: read one, write the other
        key_scratch = np.empty((blocks, 2 * RUN_CAPACITY), np.int32)
        _max_pool_forward_direct(x, kernel, stride, padding, out, indices, store_indices, best_scratch, key_scratch)
        return
    columns = min(x.shape[4], TILE_COLUMNS)
    best_scratch = np.empty((blocks, columns), x.dtype)
    key_scratch = np.empty((blocks, columns), np.int64)
    _max_pool_forward_kernel(x, kernel, stride, padding, dilation, out, indices, store_indices, best_scratch, key_scratch)


@njit(**KERNEL_OPTIONS)
def _max_pool_forward_channels_last_kernel(x, kernel, stride, padding, dilation, out, indices, store_indices,
                                           best_scratch, key_scratch):
    """``max_pool_forward_channels_last`` with (blocks, 2, channels) scratch for the running maxima of all
    channels of one window: without indices passed back and forth between the two rows (plain vector
    stores); with indices updated in place in the first row with their keys (measured faster so)."""
    for block in prange(best_scratch.shape[0]):  # np.int64: range's index type, so the twin shares the signature
        _channels_last_block(x, kernel, stride, padding, dilation, out, indices, store_indices, best_scratch,
                             key_scratch, np.int64(block))


@njit(**BLOCK_OPTIONS)
def _channels_last_block(x, kernel, stride, padding, dilation, out, indices, store_indices, best_scratch, key_scratch,
                         block):
    """The rows of one block of ``_max_pool_forward_channels_last_kernel`` (see ``BLOCK_OPTIONS``)."""
    batch, depth, height, width, channels = x.shape
    out_depth, out_height, out_width = out.shape[1], out.shape[2], out.shape[3]
    blocks = best_scratch.shape[0]
    rows = batch * out_depth * out_height
    best, keys = best_scratch[block], key_scratch[block]
    for row in range(block * rows // blocks, (block + 1) * rows // blocks):
        n, _, od, oh = unravel_row(row, 1, out_depth, out_height)
        d_start = od * stride[0] - padding[0]
        h_start = oh * stride[1] - padding[1]
        d_first, d_stop = valid_taps(d_start, kernel[0], dilation[0], depth)
        h_first, h_stop = valid_taps(h_start, kernel[1], dilation[1], height)
        for ow in range(out_width):
            w_start = ow * stride[2] - padding[2]
            w_first, w_stop = valid_taps(w_start, kernel[2], dilation[2], width)
            current = 0
            seeded = False
            for i in range(d_first, d_stop):
                d = d_start + i * dilation[0]
                for j in range(h_first, h_stop):
                    h = h_start + j * dilation[1]
                    for k in range(w_first, w_stop):
                        w = w_start + k * dilation[2]
                        flat = flat_plane_index(d, h, w, height, width)
                        if not seeded:  # the first in-input element seeds every channel
                            copy_row(x[n, d, h, w], best[0])
                            if store_indices:
                                keys[0, :] = flat
                            seeded = True
                            continue
                        if store_indices:  # in place: measured faster than back and forth with keys
                            _fold_into_maxima(x[n, d, h, w], best[0], keys[0], flat, True)
                        else:
                            _fold_maxima(x[n, d, h, w], best[current], keys[current], best[1 - current],
                                           keys[1 - current], flat, False)
                            current = 1 - current
            copy_row(best[current], out[n, od, oh, ow])
            if store_indices:
                copy_row(keys[current], indices[n, od, oh, ow])


def _forward_channels_last(x, kernel, stride, padding, dilation, out, indices, store_indices):
    """``max_pool_forward`` on (N, D, H, W, C) views: all channels of a window at once, vectorised.

    The same rule as ``max_pool_forward``, taps in window order. Rows of outputs are split into
    blocks, each with two (channels,) scratch rows for values and two for keys, allocated here.
    """
    rows = x.shape[0] * out.shape[1] * out.shape[2]
    blocks = row_blocks(rows)
    channels = x.shape[4]
    best_scratch = np.empty((blocks, 2, channels), x.dtype)
    # int32 keys (widened when stored) share the vector lanes of float32 values; planes that large need int64
    key_dtype = np.int32 if x.shape[1] * x.shape[2] * x.shape[3] < 2**31 else np.int64
    key_scratch = np.empty((blocks, 2, channels if store_indices else 1), key_dtype)
    _max_pool_forward_channels_last_kernel(
        x, kernel, stride, padding, dilation, out, indices, store_indices, best_scratch, key_scratch
    )


@njit(**KERNEL_OPTIONS)
def _routed_backward_channels_first(grad_output, indices, grad_input):
    """Route each output gradient to the input element its index names.

    One thread owns a whole (n, c) plane and visits its outputs in order, so
    overlapping windows add up deterministically without atomics.
    """
    batch, channels, depth, height, width = grad_input.shape
    out_depth, out_height, out_width = grad_output.shape[2], grad_output.shape[3], grad_output.shape[4]
    for nc in prange(batch * channels):
        n = nc // channels
        c = nc % channels
        target = grad_input[n, c]
        target[:] = 0
        for od in range(out_depth):
            for oh in range(out_height):
                for ow in range(out_width):
                    d, h, w = plane_position(indices[n, c, od, oh, ow], height, width)
                    target[d, h, w] += grad_output[n, c, od, oh, ow]


@njit(**KERNEL_OPTIONS)
def _routed_backward_channels_last(grad_output, indices, grad_input):
    """``max_pool_backward`` on (N, D, H, W, C) views: one thread owns a whole image n."""
    batch, depth, height, width, channels = grad_input.shape
    out_depth, out_height, out_width = grad_output.shape[1], grad_output.shape[2], grad_output.shape[3]
    for n in prange(batch):
        target = grad_input[n]
        target[:] = 0
        for od in range(out_depth):
            for oh in range(out_height):
                for ow in range(out_width):
                    for c in range(channels):
                        d, h, w = plane_position(indices[n, od, oh, ow, c], height, width)
                        target[d, h, w, c] += grad_output[n, od, oh, ow, c]


@njit(**KERNEL_OPTIONS)
def _routed_backward_flat(grad_output, indices, grad_input):
    """``max_pool_backward`` for contiguous memory seen as (images, positions, channels).

    Channels-first memory is (N * C, positions, 1), channels-last (N, positions, C).
    The flat index addresses the position axis directly, so no division runs
    per element. One thread owns each image; outputs are visited in order.
    """
    for image in prange(grad_input.shape[0]):
        target = grad_input[image]
        target[:] = 0
        grad = grad_output[image]
        where = indices[image]
        for position in range(grad.shape[0]):
            for c in range(grad.shape[1]):
                target[where[position, c], c] += grad[position, c]


# --------------------------------------------------------------------------- the backend contract
# Entries of ops.max_pool.Kernels, ops.global_pool.MaxKernels and contract.RoutedKernels: canonical (N, C, D, H, W) views in. The CPU picks its kernel here: the channels-last kernels
# when the channels are innermost in memory (``in_kernel_layout``), the channels-first ones otherwise.


def max_pool_forward(x, window, out, indices):
    """Each window's maximum into ``out``, its flat plane index into ``indices`` unless that is None.

    ``window`` is (kernel, stride, padding, dilation), three ints each.
    """
    store_indices = indices is not None
    last, (x, out, indices) = in_kernel_layout(x, x, out, indices)
    indices = indices if store_indices else NO_INDICES
    if last:
        _forward_channels_last(x, *window, out, indices, store_indices)
    else:
        blocks = row_blocks(math.prod(out.shape[:4]))
        _forward_channels_first(x, *window, blocks, out, indices, store_indices)


def global_max_pool_forward(x, out, indices):
    """Max pooling with one window covering each whole plane; ``out`` and ``indices`` are (N, C, 1, 1, 1)."""
    plane = tuple(x.shape[2:])
    max_pool_forward(x, (plane, plane, (0, 0, 0), (1, 1, 1)), out, indices)


def routed_backward(grad_output, indices, grad_input):
    """Each output gradient added to the input element its index names, in output order (deterministic)."""
    indices = indices.astype(np.int64, copy=False)
    last, views = in_kernel_layout(grad_input, grad_output, indices, grad_input)
    if all(view.flags.c_contiguous for view in views):  # plain memory: the kernel without index divisions
        _routed_backward_flat(*(_images_positions_channels(view, last) for view in views))
    elif last:
        _routed_backward_channels_last(*views)
    else:
        _routed_backward_channels_first(*views)


def _images_positions_channels(view: np.ndarray, channels_last_memory: bool) -> np.ndarray:
    """A contiguous kernel view as (images, positions, channels), without a copy."""
    if channels_last_memory:  # (N, D, H, W, C)
        return view.reshape(view.shape[0], math.prod(view.shape[1:-1]), view.shape[-1])
    return view.reshape(view.shape[0] * view.shape[1], math.prod(view.shape[2:]), 1)


__all__ = ["global_max_pool_forward", "max_pool_forward", "routed_backward"]
