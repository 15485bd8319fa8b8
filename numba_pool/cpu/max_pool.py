"""Max pooling on the CPU: forward with optional argmax, backward routed by the argmax.

Two memory layouts: ``(N, C, D, H, W)`` views, where each thread walks output
rows of one plane, and channels-last ``(N, D, H, W, C)`` views, where the
innermost loop runs over the contiguous channels and vectorises.
"""

import numpy as np
from numba import njit, prange

from ._common import (
    KERNEL_OPTIONS,
    flat_plane_index,
    interior_windows,
    next_row,
    unravel_row,
    valid_taps,
)


@njit(inline="always", cache=True)
def _fold_into_maxima(source, best, keys, key, store_keys):
    """Fold a row of values into element-wise running maxima, noting ``key`` where a value wins.

    Used for input rows against per-column maxima (channels-first) and for one
    window element's channels against per-channel maxima (channels-last).
    """
    if store_keys:
        for w in range(source.shape[0]):
            value = source[w]
            current = best[w]
            replace = (value > current) | ((value != value) & (current == current))
            best[w] = value if replace else current
            keys[w] = key if replace else keys[w]
    else:
        for w in range(source.shape[0]):
            value = source[w]
            current = best[w]
            replace = (value > current) | ((value != value) & (current == current))
            best[w] = value if replace else current


@njit(inline="always", cache=True)
def _reduce_window_scalar(best, keys, w_start, w_first, w_stop, dilation, width):
    """(maximum, flat index) of one window over the column maxima, in window order (border windows)."""
    best_w = w_start + w_first * dilation
    value = best[best_w]
    flat = keys[best_w] * width + best_w
    for k in range(w_first + 1, w_stop):
        w = w_start + k * dilation
        candidate = best[w]
        candidate_flat = keys[w] * width + w
        if candidate != candidate:
            replace = value == value or candidate_flat < flat
        else:
            replace = candidate > value or (candidate == value and candidate_flat < flat)
        if replace:
            value = candidate
            flat = candidate_flat
    return value, flat


@njit(inline="always", cache=True)
def _reduce_interior(best, keys, out_row, index_row, first, stop, kernel, stride, offset, dilation, width, store_indices):
    """Windows first..stop-1, which lie wholly inside the row, reduced tap by tap across all windows.

    Branch-free selects over contiguous output rows, so the loops vectorise.
    Ties and NaN resolve by the smaller flat index, which is window order
    because a flat index orders by (row, column).
    """
    for ow in range(first, stop):
        w = ow * stride + offset
        out_row[ow] = best[w]
        if store_indices:
            index_row[ow] = keys[w] * width + w
    for k in range(1, kernel):
        tap = offset + k * dilation
        if store_indices:
            for ow in range(first, stop):
                w = ow * stride + tap
                candidate = best[w]
                value = out_row[ow]
                candidate_flat = keys[w] * width + w
                candidate_nan = candidate != candidate
                value_nan = value != value
                earlier = candidate_flat < index_row[ow]
                replace = (
                    (candidate > value)
                    | (candidate_nan & ~value_nan)
                    | (((candidate == value) | (candidate_nan & value_nan)) & earlier)
                )
                out_row[ow] = candidate if replace else value
                index_row[ow] = candidate_flat if replace else index_row[ow]
        else:
            for ow in range(first, stop):
                candidate = best[ow * stride + tap]
                value = out_row[ow]
                replace = (candidate > value) | ((candidate != candidate) & (value == value))
                out_row[ow] = candidate if replace else value


@njit(**KERNEL_OPTIONS)
def max_pool_forward(x, kernel, stride, padding, dilation, blocks, out, indices, store_indices):
    """Write each window's maximum to ``out`` (and its flat plane index to ``indices``).

    Ties go to the first maximum in window order; the first NaN wins over any
    number, so NaN propagates. Padding is never visited: tap ranges are clipped
    to the input, and the first in-input element seeds each maximum (which also
    makes integer dtypes work).

    Separable: per output row, the window's input rows are first folded into
    per-column maxima (contiguous, vectorised), remembering for each column the
    row its maximum came from; then the windows reduce their columns, ties
    broken by flat index, which is window order. Rows are split into
    ``blocks``, each with its own column buffers.
    """
    batch, channels, depth, height, width = x.shape
    out_depth, out_height, out_width = out.shape[2], out.shape[3], out.shape[4]
    kernel_w, stride_w, dilation_w = kernel[2], stride[2], dilation[2]
    interior_first, interior_stop = interior_windows(out_width, width, kernel_w, stride_w, padding[2], dilation_w)
    rows = batch * channels * out_depth * out_height
    for block in prange(blocks):
        best = np.empty(width, x.dtype)
        keys = np.empty(width, np.int64)  # d * height + h of each column's maximum
        first_row = block * rows // blocks
        n, c, od, oh = unravel_row(first_row, channels, out_depth, out_height)
        for _ in range(first_row, (block + 1) * rows // blocks):
            plane = x[n, c]
            d_start = od * stride[0] - padding[0]
            h_start = oh * stride[1] - padding[1]
            d_first, d_stop = valid_taps(d_start, kernel[0], dilation[0], depth)
            h_first, h_stop = valid_taps(h_start, kernel[1], dilation[1], height)
            d = d_start + d_first * dilation[0]
            h = h_start + h_first * dilation[1]
            best[:] = plane[d, h]
            keys[:] = d * height + h
            for i in range(d_first, d_stop):
                d = d_start + i * dilation[0]
                for j in range(h_first, h_stop):
                    h = h_start + j * dilation[1]
                    _fold_into_maxima(plane[d, h], best, keys, d * height + h, store_indices)
            out_row = out[n, c, od, oh]
            index_row = indices[n, c, od, oh] if store_indices else indices[0, 0, 0, 0]
            for border in range(2):  # the windows that reach into the padding, one by one
                first, stop = (0, interior_first) if border == 0 else (interior_stop, out_width)
                for ow in range(first, stop):
                    w_start = ow * stride_w - padding[2]
                    w_first, w_stop = valid_taps(w_start, kernel_w, dilation_w, width)
                    value, flat = _reduce_window_scalar(best, keys, w_start, w_first, w_stop, dilation_w, width)
                    out_row[ow] = value
                    if store_indices:
                        index_row[ow] = flat
            if stride_w == 2 and dilation_w == 1:  # the common case, with constants the compiler can vectorise
                _reduce_interior(
                    best, keys, out_row, index_row, interior_first, interior_stop,
                    kernel_w, 2, -padding[2], 1, width, store_indices,
                )
            else:
                _reduce_interior(
                    best, keys, out_row, index_row, interior_first, interior_stop,
                    kernel_w, stride_w, -padding[2], dilation_w, width, store_indices,
                )
            n, c, od, oh = next_row(n, c, od, oh, channels, out_depth, out_height)


@njit(**KERNEL_OPTIONS)
def max_pool_forward_channels_last(x, kernel, stride, padding, dilation, out, indices, store_indices):
    """``max_pool_forward`` on (N, D, H, W, C) views: the running maxima of all channels live in ``out``."""
    batch, depth, height, width, channels = x.shape
    out_depth, out_height, out_width = out.shape[1], out.shape[2], out.shape[3]
    for row in prange(batch * out_depth * out_height):
        n, _, od, oh = unravel_row(row, 1, out_depth, out_height)
        d_start = od * stride[0] - padding[0]
        h_start = oh * stride[1] - padding[1]
        d_first, d_stop = valid_taps(d_start, kernel[0], dilation[0], depth)
        h_first, h_stop = valid_taps(h_start, kernel[1], dilation[1], height)
        for ow in range(out_width):
            w_start = ow * stride[2] - padding[2]
            w_first, w_stop = valid_taps(w_start, kernel[2], dilation[2], width)
            best = out[n, od, oh, ow]
            best_indices = indices[n, od, oh, ow] if store_indices else indices[0, 0, 0, 0]
            d = d_start + d_first * dilation[0]
            h = h_start + h_first * dilation[1]
            w = w_start + w_first * dilation[2]
            best[:] = x[n, d, h, w]  # the first in-input element seeds every channel
            if store_indices:
                best_indices[:] = flat_plane_index(d, h, w, height, width)
            for i in range(d_first, d_stop):
                d = d_start + i * dilation[0]
                for j in range(h_first, h_stop):
                    h = h_start + j * dilation[1]
                    for k in range(w_first, w_stop):
                        w = w_start + k * dilation[2]
                        flat = flat_plane_index(d, h, w, height, width)
                        _fold_into_maxima(x[n, d, h, w], best, best_indices, flat, store_indices)


@njit(**KERNEL_OPTIONS)
def max_pool_backward(grad_output, indices, grad_input):
    """Route each output gradient to the input element its index names.

    One thread owns a whole (n, c) plane and visits its outputs in order, so
    overlapping windows add up deterministically without atomics.
    """
    batch, channels, depth, height, width = grad_input.shape
    out_depth, out_height, out_width = grad_output.shape[2], grad_output.shape[3], grad_output.shape[4]
    plane = height * width
    for nc in prange(batch * channels):
        n = nc // channels
        c = nc % channels
        target = grad_input[n, c]
        target[:] = 0
        for od in range(out_depth):
            for oh in range(out_height):
                for ow in range(out_width):
                    index = indices[n, c, od, oh, ow]
                    target[index // plane, (index // width) % height, index % width] += grad_output[n, c, od, oh, ow]


@njit(**KERNEL_OPTIONS)
def max_pool_backward_channels_last(grad_output, indices, grad_input):
    """``max_pool_backward`` on (N, D, H, W, C) views: one thread owns a whole image n."""
    batch, depth, height, width, channels = grad_input.shape
    out_depth, out_height, out_width = grad_output.shape[1], grad_output.shape[2], grad_output.shape[3]
    plane = height * width
    for n in prange(batch):
        target = grad_input[n]
        target[:] = 0
        for od in range(out_depth):
            for oh in range(out_height):
                for ow in range(out_width):
                    for c in range(channels):
                        index = indices[n, od, oh, ow, c]
                        target[index // plane, (index // width) % height, index % width, c] += grad_output[n, od, oh, ow, c]


@njit(**KERNEL_OPTIONS)
def max_pool_backward_flat(grad_output, indices, grad_input):
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
