"""Stochastic pooling (Zeiler & Fergus, 2013) on the CPU.

The rule of one window (weights, the pick, the expected value, the inference
gradient; see ``rules.window_output``) is written once in ``..rules`` and shared
with the CUDA kernels. The random number of each output element comes from
``uniform(seed, logical position)``, so picks do not depend on threads or layout.
Here: that rule for many windows at once, vectorised, bit for bit the same.

About 430 lines: the lane kernels of both layouts and their scratch sizing
belong together (they must stay bit for bit equal to the one rule).
"""

import numpy as np
from numba import njit, prange

from ..._rng import mix64, output_counter, uniform_after_mix
from ..rules import (  # noqa: F401  (weight_scale and window_output: the rules the lane forms are tested against)
    INFINITE_WEIGHTS,
    inference_gradient,
    pick_target,
    scaled_weight,
    weight_scale,
    window_output,
    window_statistics,
)
from ._common import (
    BLOCK_OPTIONS,
    NO_INDICES,
    in_kernel_layout,
    KERNEL_OPTIONS,
    flat_plane_index,
    interior_windows,
    next_row,
    row_blocks,
    unravel_row,
    window_extent,
)


# --------------------------------------------------------------------------- many windows at once
#
# The forward kernels compute ``window_output`` for a tile of windows at once, one window per
# lane: the windows of one output row (channels-first) or the channels of one window
# (channels-last). Each window's taps are first copied, as float64, into a (taps, lanes) buffer;
# then every pass runs over the taps in window order with the lanes innermost, contiguous and
# branch-free (selects), so the compiler vectorises it while each lane adds its window's terms in
# exactly the order ``window_output`` does: the results are bit for bit the same.

LANE_TILE = 128  # lanes per tile: the buffers of one tile stay in the L1 cache
LANE_PADDING = 16  # passes run over a multiple of this many lanes: shorter loops would not run vectorised
TAP_VALUES_BUDGET = 2048  # at most this many buffered values per tile (fewer lanes for large windows)
_STATISTICS_ROWS = 7  # largest, plain sum, scale, weight sum, square sum, pick target, running weight
_MARK_ROWS = 3  # flat index of the first NaN, tap of the last candidate, whether the pick is done

# The lane kernels divide only by values they have checked are not 0, so NumPy's error model (no
# ZeroDivisionError branch per division) changes no result and lets the output stores vectorise.
LANE_KERNEL_OPTIONS = {**KERNEL_OPTIONS, "error_model": "numpy"}
LANE_BLOCK_OPTIONS = {**BLOCK_OPTIONS, "error_model": "numpy"}


# rules.weight_scale, vectorised over lanes (from the exponent bits)
@njit(inline="always", cache=True)
def lane_weight_scales(largest, scale, lanes):
    """``scale[j] = weight_scale(largest[j])`` for the first ``lanes`` lanes, from the exponent bits.

    For a positive normal ``largest`` with biased exponent E, frexp's exponent is E - 1022, so the
    factor is 2**min(1022 - E, 1021); subnormals (E = 0) take the cap too. 2**p is built as
    2**(p + 2) / 4 so that the two subnormal factors (E = 2045, 2046) come out exactly as well.
    """
    largest_bits = largest.view(np.uint64)
    scale_bits = scale.view(np.uint64)
    for j in range(lanes):
        exponent = np.int64((largest_bits[j] >> np.uint64(52)) & np.uint64(0x7FF))
        power = min(1022 - exponent, 1021)  # -1025 for inf and NaN: replaced below
        scale_bits[j] = np.uint64(max(power + 1025, 0)) << np.uint64(52)
    for j in range(lanes):
        value = largest[j]
        factor = scale[j] * 0.25 if value > 0 else 1.0
        scale[j] = INFINITE_WEIGHTS if value == np.inf else factor


# rules.window_statistics (first pass), vectorised over lanes
@njit(inline="always", cache=True)
def _statistics_pass(taps, tap_flats, tap_count, lanes, largest, plain_sum, nan_flat, with_plain_sum):
    """``window_statistics``' first pass per lane: the largest weight, the flat index (at lane 0) of
    the first NaN or -1, and, when ``with_plain_sum`` (inference), the plain sum."""
    for j in range(lanes):
        largest[j] = 0.0
        plain_sum[j] = 0.0
        nan_flat[j] = -1
    for tap in range(tap_count):
        values = taps[tap]
        flat = tap_flats[tap]
        if with_plain_sum:
            for j in range(lanes):
                value = values[j]
                nan_flat[j] = flat if (value != value) & (nan_flat[j] < 0) else nan_flat[j]
                largest[j] = max(largest[j], value)
                plain_sum[j] += value
        else:
            for j in range(lanes):
                value = values[j]
                nan_flat[j] = flat if (value != value) & (nan_flat[j] < 0) else nan_flat[j]
                largest[j] = max(largest[j], value)


# rules.window_statistics (second pass), vectorised over lanes
@njit(inline="always", cache=True)
def _weight_pass(taps, tap_count, lanes, scale, weight_sum, square_sum, with_square_sum):
    """``window_statistics``' second pass per lane: the sum of the scaled weights and, when
    ``with_square_sum`` (inference), of their squares."""
    for j in range(lanes):
        weight_sum[j] = 0.0
        square_sum[j] = 0.0
    for tap in range(tap_count):
        values = taps[tap]
        if with_square_sum:
            for j in range(lanes):
                weight = scaled_weight(values[j], scale[j])
                weight_sum[j] += weight
                square_sum[j] += weight * weight
        else:
            for j in range(lanes):
                weight_sum[j] += scaled_weight(values[j], scale[j])


# rules.pick_element, vectorised over lanes (branch-free)
@njit(inline="always", cache=True)
def _pick_pass(taps, tap_count, lanes, scale, weight_sum, target, running, last, done):
    """``pick_element`` per lane: ``last`` ends as the tap picked (the first candidate whose running
    sum passes the target, else the last candidate); later taps no longer move it once ``done``."""
    for j in range(lanes):
        running[j] = 0.0
        last[j] = -1
        done[j] = 0
    for tap in range(tap_count):
        values = taps[tap]
        for j in range(lanes):
            weight = scaled_weight(values[j], scale[j])
            weighted = weight_sum[j] > 0
            running[j] += weight if weighted else 1.0  # a skipped weight is +0.0: the sum is unchanged
            moves = ((weight > 0) | (not weighted)) & (done[j] == 0)
            last[j] = tap if moves else last[j]
            done[j] = 1 if moves & (running[j] > target[j]) else done[j]


# rules.window_output, vectorised over lanes
@njit(inline="always", cache=True)
def _lane_window_outputs(taps, tap_flats, tap_count, lanes, flat_step, training, mixed_seed, counter_first, counter_step,
                         statistics, marks, out_lanes, index_lanes, store_indices):
    """``window_output`` for ``lanes`` windows whose ``tap_count`` in-input elements are ``taps[:, j]``.

    Tap ``t`` of lane ``j`` is the element at flat plane index ``tap_flats[t] + j * flat_step``, and
    lane ``j`` draws with counter ``counter_first + j * counter_step``.
    """
    largest, plain_sum, scale, weight_sum = statistics[0], statistics[1], statistics[2], statistics[3]
    square_sum, target, running = statistics[4], statistics[5], statistics[6]
    nan_flat, last, done = marks[0], marks[1], marks[2]
    padded = -(-lanes // LANE_PADDING) * LANE_PADDING  # the buffers are that wide (see _lane_scratch)
    for tap in range(tap_count):  # the padding lanes repeat the last window; their results are not stored
        values = taps[tap]
        for j in range(lanes, padded):
            values[j] = values[lanes - 1]
    _statistics_pass(taps, tap_flats, tap_count, padded, largest, plain_sum, nan_flat, not training)
    lane_weight_scales(largest, scale, padded)
    _weight_pass(taps, tap_count, padded, scale, weight_sum, square_sum, not training)
    if training:
        for j in range(padded):
            draw = uniform_after_mix(mixed_seed, counter_first + j * counter_step)
            target[j] = pick_target(draw, weight_sum[j], tap_count)
        _pick_pass(taps, tap_count, padded, scale, weight_sum, target, running, last, done)
        for j in range(lanes):
            nan = nan_flat[j] >= 0
            tap = last[j]
            out_lanes[j] = np.nan if nan else taps[tap, j]
            if store_indices:
                index_lanes[j] = (nan_flat[j] if nan else tap_flats[tap]) + j * flat_step
    else:
        for j in range(lanes):
            out_lanes[j] = _lane_expected_value(weight_sum[j], square_sum[j], plain_sum[j], tap_count, scale[j], nan_flat[j])


# rules.expected_value, branch-free
@njit(inline="always", cache=True)
def _lane_expected_value(weight_sum, square_sum, plain_sum, count, scale, nan_flat):
    """``expected_value`` (NaN for a window with a NaN) with every division done and the result
    selected, so that a loop over lanes vectorises; the divisors are replaced by 1 where they are 0."""
    weighted = weight_sum > 0
    infinite = scale == INFINITE_WEIGHTS
    ratio = (square_sum / (weight_sum if weighted else 1.0)) / (1.0 if infinite else scale)
    weighted_value = np.inf if infinite else ratio
    expected = weighted_value if weighted else plain_sum / count
    return np.nan if nan_flat >= 0 else expected


# Windows with more in-input taps than this run one by one (``window_output``): lane buffers (taps x at
# least LANE_PADDING lanes of float64 per block of rows, 128 KiB here) that large would cost more memory
# than they save time.
LARGEST_LANE_WINDOW = 1024


def _taps_in_input(kernel, spatial):
    """The most taps of one window that can lie in the input: the kernel clipped to the input, per axis."""
    return min(kernel[0], spatial[0]) * min(kernel[1], spatial[1]) * min(kernel[2], spatial[2])


def _lane_scratch(blocks, taps, lanes_wanted):
    """Per block of rows: the (taps, lanes) value buffer, the taps' flat indices, the lane statistics and marks.

    ``taps`` 0 gives empty buffers: every window then runs on its own.
    """
    lane_tile = max(1, min(LANE_TILE, lanes_wanted, TAP_VALUES_BUDGET // max(taps, 1)))
    padded = -(-lane_tile // LANE_PADDING) * LANE_PADDING
    return (
        np.empty((blocks, taps, padded), np.float64),
        np.empty((blocks, taps), np.int64),
        np.empty((blocks, _STATISTICS_ROWS, padded), np.float64),
        np.empty((blocks, _MARK_ROWS, padded), np.int64),
        lane_tile,
    )


@njit(**LANE_KERNEL_OPTIONS)
def _stochastic_pool_forward_kernel(x, kernel, stride, padding, draws, training, out, indices, store_indices,
                                    taps_scratch, flats_scratch, statistics_scratch, marks_scratch, lane_tile):
    """``stochastic_pool_forward`` with the scratch buffers given, one set per block of rows.

    The windows that lie wholly inside the input along W run as lanes; the few clipped ones at the
    ends of a row run ``window_output`` directly.
    """
    seed, origin, logical = draws  # unpacked here: a parallel loop takes no nested tuple
    for block in prange(taps_scratch.shape[0]):  # np.int64: range's index type, so the twin shares the signature
        _forward_block(x, kernel, stride, padding, seed, origin, logical, training, out, indices, store_indices,
                       taps_scratch, flats_scratch, statistics_scratch, marks_scratch, lane_tile, np.int64(block))


@njit(**LANE_BLOCK_OPTIONS)
def _forward_block(x, kernel, stride, padding, seed, origin, logical, training, out, indices, store_indices,
                   taps_scratch, flats_scratch, statistics_scratch, marks_scratch, lane_tile, block):
    """The rows of one block of ``_stochastic_pool_forward_kernel`` (see ``BLOCK_OPTIONS``)."""
    mixed_seed = mix64(seed)
    batch, channels, depth, height, width = x.shape
    out_depth, out_height, out_width = out.shape[2], out.shape[3], out.shape[4]
    kernel_w, stride_w, padding_w = kernel[2], stride[2], padding[2]
    interior_first, interior_stop = interior_windows(out_width, width, kernel_w, stride_w, padding_w, 1)
    if taps_scratch.shape[1] == 0:  # windows too large for lanes: every window on its own
        interior_first, interior_stop = 0, 0
    blocks = taps_scratch.shape[0]
    rows = batch * channels * out_depth * out_height
    taps, tap_flats = taps_scratch[block], flats_scratch[block]
    first_row = block * rows // blocks
    n, c, od, oh = unravel_row(first_row, channels, out_depth, out_height)
    for _ in range(first_row, (block + 1) * rows // blocks):
        plane = x[n, c]
        d_first, d_stop, _ = window_extent(od * stride[0] - padding[0], kernel[0], depth, padding[0])
        h_first, h_stop, _ = window_extent(oh * stride[1] - padding[1], kernel[1], height, padding[1])
        out_row = out[n, c, od, oh]
        index_row = indices[n, c, od, oh] if store_indices else indices[0, 0, 0, 0]
        row_counter = output_counter(origin, logical, n, c, od, oh, 0)  # output ow draws with row_counter + ow
        for ow in range(out_width):
            if interior_first <= ow < interior_stop:
                continue
            w_first, w_stop, _ = window_extent(ow * stride_w - padding_w, kernel_w, width, padding_w)
            box = (d_first, d_stop, h_first, h_stop, w_first, w_stop)
            value, picked = window_output(plane, box, training, seed, row_counter + ow)
            out_row[ow] = value
            if store_indices:
                index_row[ow] = picked
        for lane_first in range(interior_first, interior_stop, lane_tile):
            lanes = min(lane_tile, interior_stop - lane_first)
            w_start = lane_first * stride_w - padding_w
            tap = 0
            for d in range(d_first, d_stop):
                for h in range(h_first, h_stop):
                    source = plane[d, h]
                    for w in range(w_start, w_start + kernel_w):
                        values = taps[tap]
                        for j in range(lanes):
                            values[j] = np.float64(source[w + j * stride_w])
                        tap_flats[tap] = flat_plane_index(d, h, w, height, width)
                        tap += 1
            lane_stop = lane_first + lanes
            _lane_window_outputs(
                taps, tap_flats, tap, lanes, stride_w, training, mixed_seed, row_counter + lane_first, 1,
                statistics_scratch[block], marks_scratch[block], out_row[lane_first:lane_stop],
                index_row[lane_first:lane_stop] if store_indices else index_row, store_indices,
            )
        n, c, od, oh = next_row(n, c, od, oh, channels, out_depth, out_height)


def _forward_channels_first(x, kernel, stride, padding, draws, training, out, indices, store_indices):
    """Training: the picked element (and its flat index); inference: the expected value.

    ``draws`` is (seed, origin, shape): the random number of an output comes from its position in a
    whole output of size ``shape`` where this one starts at ``origin`` (a block of a dask array).
    The scratch buffers are allocated here, not in the compiled kernel, so that a failed allocation
    raises MemoryError.
    """
    rows = x.shape[0] * x.shape[1] * out.shape[2] * out.shape[3]
    blocks = row_blocks(rows)
    taps = _taps_in_input(kernel, x.shape[2:])
    scratch = _lane_scratch(blocks, taps if taps <= LARGEST_LANE_WINDOW else 0, out.shape[4])
    _stochastic_pool_forward_kernel(x, kernel, stride, padding, draws, training, out, indices, store_indices, *scratch)


@njit(**LANE_KERNEL_OPTIONS)
def _stochastic_pool_forward_channels_last_kernel(x, kernel, stride, padding, draws, training, out, indices, store_indices,
                                                  taps_scratch, flats_scratch, statistics_scratch, marks_scratch, lane_tile):
    """``stochastic_pool_forward_channels_last`` with the scratch buffers given, one set per block of rows."""
    seed, origin, logical = draws  # unpacked here: a parallel loop takes no nested tuple
    for block in prange(taps_scratch.shape[0]):  # np.int64: range's index type, so the twin shares the signature
        _forward_channels_last_block(x, kernel, stride, padding, seed, origin, logical, training, out, indices,
                                     store_indices, taps_scratch, flats_scratch, statistics_scratch, marks_scratch,
                                     lane_tile, np.int64(block))


@njit(**LANE_BLOCK_OPTIONS)
def _forward_channels_last_block(x, kernel, stride, padding, seed, origin, logical, training, out, indices,
                                 store_indices, taps_scratch, flats_scratch, statistics_scratch, marks_scratch,
                                 lane_tile, block):
    """The rows of one block of ``_stochastic_pool_forward_channels_last_kernel`` (see ``BLOCK_OPTIONS``)."""
    mixed_seed = mix64(seed)
    batch, depth, height, width, channels = x.shape
    out_depth, out_height, out_width = out.shape[1], out.shape[2], out.shape[3]
    channel_step = logical[2] * logical[3] * logical[4]  # counter distance between channels c and c + 1
    blocks = taps_scratch.shape[0]
    rows = batch * out_depth * out_height
    taps, tap_flats = taps_scratch[block], flats_scratch[block]
    for row in range(block * rows // blocks, (block + 1) * rows // blocks):
        n, _, od, oh = unravel_row(row, 1, out_depth, out_height)
        d_first, d_stop, _ = window_extent(od * stride[0] - padding[0], kernel[0], depth, padding[0])
        h_first, h_stop, _ = window_extent(oh * stride[1] - padding[1], kernel[1], height, padding[1])
        for ow in range(out_width):
            w_first, w_stop, _ = window_extent(ow * stride[2] - padding[2], kernel[2], width, padding[2])
            counter = output_counter(origin, logical, n, 0, od, oh, ow)
            out_window = out[n, od, oh, ow]
            index_window = indices[n, od, oh, ow] if store_indices else indices[0, 0, 0, 0]
            for lane_first in range(0, channels, lane_tile):
                lanes = min(lane_tile, channels - lane_first)
                tap = 0
                for d in range(d_first, d_stop):
                    for h in range(h_first, h_stop):
                        for w in range(w_first, w_stop):
                            source = x[n, d, h, w]
                            values = taps[tap]
                            for j in range(lanes):
                                values[j] = np.float64(source[lane_first + j])
                            tap_flats[tap] = flat_plane_index(d, h, w, height, width)
                            tap += 1
                lane_stop = lane_first + lanes
                _lane_window_outputs(
                    taps, tap_flats, tap, lanes, 0, training, mixed_seed, counter + lane_first * channel_step,
                    channel_step, statistics_scratch[block], marks_scratch[block], out_window[lane_first:lane_stop],
                    index_window[lane_first:lane_stop] if store_indices else index_window, store_indices,
                )


def _forward_channels_last(x, kernel, stride, padding, draws, training, blocks, out, indices, store_indices):
    """``stochastic_pool_forward`` on (N, D, H, W, C) views, the channels of a window as lanes.

    The same arithmetic in the same order as ``window_output``, so the same
    seed picks the same elements in either memory layout.
    """
    if _taps_in_input(kernel, x.shape[1:4]) > LARGEST_LANE_WINDOW:  # window by window, in the channels-first kernel
        to_channels_first = (0, 4, 1, 2, 3)
        _forward_channels_first(
            x.transpose(to_channels_first), kernel, stride, padding, draws, training, out.transpose(to_channels_first),
            indices.transpose(to_channels_first), store_indices,
        )
        return
    scratch = _lane_scratch(blocks, _taps_in_input(kernel, x.shape[1:4]), x.shape[4])
    _stochastic_pool_forward_channels_last_kernel(
        x, kernel, stride, padding, draws, training, out, indices, store_indices, *scratch
    )


@njit(**KERNEL_OPTIONS)
def _inference_backward(x, grad_output, kernel, stride, padding, grad_input):
    """Exact gradient of the inference output sum(w * a) / sum(w), w = max(a, 0) (see ``inference_gradient``).

    One thread owns a plane and visits its windows in order (deterministic).
    """
    batch, channels, depth, height, width = x.shape
    out_depth, out_height, out_width = grad_output.shape[2], grad_output.shape[3], grad_output.shape[4]
    for nc in prange(batch * channels):
        n = nc // channels
        c = nc % channels
        plane = x[n, c]
        target = grad_input[n, c]
        target[:] = 0
        for od in range(out_depth):
            d_first, d_stop, _ = window_extent(od * stride[0] - padding[0], kernel[0], depth, padding[0])
            for oh in range(out_height):
                h_first, h_stop, _ = window_extent(oh * stride[1] - padding[1], kernel[1], height, padding[1])
                for ow in range(out_width):
                    w_first, w_stop, _ = window_extent(ow * stride[2] - padding[2], kernel[2], width, padding[2])
                    box = (d_first, d_stop, h_first, h_stop, w_first, w_stop)
                    weight_sum, square_sum, _, count, _, scale = window_statistics(plane, box)
                    grad = np.float64(grad_output[n, c, od, oh, ow])
                    for d in range(d_first, d_stop):
                        for h in range(h_first, h_stop):
                            for w in range(w_first, w_stop):
                                value = np.float64(plane[d, h, w])
                                target[d, h, w] += inference_gradient(grad, value, weight_sum, square_sum, count, scale)


# --------------------------------------------------------------------------- the backend contract
# Entries of ops.stochastic_pool.Kernels: canonical (N, C, D, H, W) views in. The CPU picks its kernel here: the channels-last kernels
# when the channels are innermost in memory (``in_kernel_layout``), the channels-first ones otherwise.


def stochastic_pool_forward(x, window, draws, training, out, indices):
    """Training: each window's sampled element (its flat plane index into ``indices`` unless None);
    inference: each window's expected value. ``window`` is (kernel, stride, padding); ``draws`` is
    (seed, origin of these outputs in the whole output, the whole output's canonical shape)."""
    store_indices = indices is not None
    last, (x, out, indices) = in_kernel_layout(x, x, out, indices)
    indices = indices if store_indices else NO_INDICES
    if last:
        blocks = row_blocks(out.shape[0] * out.shape[1] * out.shape[2])
        _forward_channels_last(x, *window, draws, training, blocks, out, indices, store_indices)
    else:
        _forward_channels_first(x, *window, draws, training, out, indices, store_indices)


def stochastic_pool_inference_backward(x, grad_output, window, grad_input):
    """The exact gradient of the inference output, on canonical views of any memory."""
    _inference_backward(x, grad_output, *window, grad_input)


__all__ = ["stochastic_pool_forward", "stochastic_pool_inference_backward"]
