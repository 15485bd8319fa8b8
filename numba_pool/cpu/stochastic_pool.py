"""Stochastic pooling (Zeiler & Fergus, 2013) on the CPU.

Weights are the positive parts of the window's in-input elements. Training
picks one element with probability weight / sum of weights (uniformly among
the in-input elements when every weight is 0); inference returns the expected
value of that pick. The random number of each output element comes from
``uniform(seed, logical position)``, so picks do not depend on threads or layout.
"""

import numpy as np
from numba import njit, prange

from .._rng import output_counter, uniform
from ._common import KERNEL_OPTIONS, flat_plane_index, unravel_row, window_extent


@njit(inline="always", cache=True)
def window_statistics(plane, box):
    """(sum of weights, sum of squared weights, plain sum, element count, flat index of the first NaN or -1).

    ``box`` is (d_first, d_stop, h_first, h_stop, w_first, w_stop), the window clipped to the input.
    """
    d_first, d_stop, h_first, h_stop, w_first, w_stop = box
    height, width = plane.shape[1], plane.shape[2]
    weight_sum = 0.0
    square_sum = 0.0
    plain_sum = 0.0
    first_nan = -1
    for d in range(d_first, d_stop):
        for h in range(h_first, h_stop):
            for w in range(w_first, w_stop):
                value = np.float64(plane[d, h, w])
                if value != value and first_nan < 0:
                    first_nan = flat_plane_index(d, h, w, height, width)
                if value > 0:
                    weight_sum += value
                    square_sum += value * value
                plain_sum += value
    count = (d_stop - d_first) * (h_stop - h_first) * (w_stop - w_first)
    return weight_sum, square_sum, plain_sum, count, first_nan


@njit(inline="always", cache=True)
def pick_element(plane, box, weight_sum, count, draw):
    """(flat index, value) of the element in ``box`` that a uniform ``draw`` in [0, 1) selects.

    With weights, the first element whose running weight sum passes
    ``draw * sum``; without, the element numbered ``floor(draw * count)``.
    """
    d_first, d_stop, h_first, h_stop, w_first, w_stop = box
    height, width = plane.shape[1], plane.shape[2]
    target = draw * weight_sum if weight_sum > 0 else np.float64(int(draw * count))
    running = 0.0
    last = -1
    last_value = plane[d_first, h_first, w_first]
    for d in range(d_first, d_stop):
        for h in range(h_first, h_stop):
            for w in range(w_first, w_stop):
                value = plane[d, h, w]
                if weight_sum > 0:
                    if not value > 0:
                        continue
                    running += np.float64(value)
                else:
                    running += 1.0
                last = flat_plane_index(d, h, w, height, width)
                last_value = value
                if running > target:
                    return last, last_value
    return last, last_value  # only reached when rounding leaves the target at the very top


@njit(inline="always", cache=True)
def window_output(plane, box, training, seed, counter):
    """(output value, flat index of the picked element or -1) of one window; the CUDA kernel calls this too.

    A NaN in the window gives NaN and its index; training picks with the draw
    ``uniform(seed, counter)``; inference gives the expected value of the pick.
    """
    weight_sum, square_sum, plain_sum, count, first_nan = window_statistics(plane, box)
    if first_nan >= 0:
        return np.nan, first_nan
    if training:
        picked, value = pick_element(plane, box, weight_sum, count, uniform(seed, counter))
        return np.float64(value), picked
    if weight_sum > 0:
        return square_sum / weight_sum, first_nan
    return plain_sum / count, first_nan


@njit(**KERNEL_OPTIONS)
def stochastic_pool_forward(x, kernel, stride, padding, draws, training, out, indices, store_indices):
    """Training: the picked element (and its flat index); inference: the expected value.

    ``draws`` is (seed, origin, shape): the random number of an output comes from its position in a
    whole output of size ``shape`` where this one starts at ``origin`` (a block of a dask array).
    """
    seed, origin, logical = draws
    batch, channels, depth, height, width = x.shape
    out_depth, out_height, out_width = out.shape[2], out.shape[3], out.shape[4]
    for row in prange(batch * channels * out_depth * out_height):
        n, c, od, oh = unravel_row(row, channels, out_depth, out_height)
        plane = x[n, c]
        d_first, d_stop, _ = window_extent(od * stride[0] - padding[0], kernel[0], depth, padding[0])
        h_first, h_stop, _ = window_extent(oh * stride[1] - padding[1], kernel[1], height, padding[1])
        for ow in range(out_width):
            w_first, w_stop, _ = window_extent(ow * stride[2] - padding[2], kernel[2], width, padding[2])
            box = (d_first, d_stop, h_first, h_stop, w_first, w_stop)
            counter = output_counter(origin, logical, n, c, od, oh, ow)
            value, picked = window_output(plane, box, training, seed, counter)
            out[n, c, od, oh, ow] = value
            if store_indices:
                indices[n, c, od, oh, ow] = picked


@njit(**KERNEL_OPTIONS)
def stochastic_pool_forward_channels_last(x, kernel, stride, padding, draws, training, blocks, out, indices, store_indices):
    """``stochastic_pool_forward`` on (N, D, H, W, C) views, all channels of a window at once.

    The same arithmetic in the same order as the channels-first kernel, so the
    same seed picks the same elements in either memory layout.
    """
    seed, origin, logical = draws
    batch, depth, height, width, channels = x.shape
    out_depth, out_height, out_width = out.shape[1], out.shape[2], out.shape[3]
    rows = batch * out_depth * out_height
    for block in prange(blocks):
        weight_sum = np.empty(channels, np.float64)
        square_sum = np.empty(channels, np.float64)
        plain_sum = np.empty(channels, np.float64)
        first_nan = np.empty(channels, np.int64)
        target = np.empty(channels, np.float64)
        picked = np.empty(channels, np.int64)
        last = np.empty(channels, np.int64)
        for row in range(block * rows // blocks, (block + 1) * rows // blocks):
            n, _, od, oh = unravel_row(row, 1, out_depth, out_height)
            d_first, d_stop, _ = window_extent(od * stride[0] - padding[0], kernel[0], depth, padding[0])
            h_first, h_stop, _ = window_extent(oh * stride[1] - padding[1], kernel[1], height, padding[1])
            for ow in range(out_width):
                w_first, w_stop, _ = window_extent(ow * stride[2] - padding[2], kernel[2], width, padding[2])
                count = (d_stop - d_first) * (h_stop - h_first) * (w_stop - w_first)
                weight_sum[:] = 0.0
                square_sum[:] = 0.0
                plain_sum[:] = 0.0
                first_nan[:] = -1
                for d in range(d_first, d_stop):
                    for h in range(h_first, h_stop):
                        for w in range(w_first, w_stop):
                            flat = flat_plane_index(d, h, w, height, width)
                            source = x[n, d, h, w]
                            for c in range(channels):
                                value = np.float64(source[c])
                                if value != value and first_nan[c] < 0:
                                    first_nan[c] = flat
                                if value > 0:
                                    weight_sum[c] += value
                                    square_sum[c] += value * value
                                plain_sum[c] += value
                target_row = out[n, od, oh, ow]
                if training:
                    for c in range(channels):
                        draw = uniform(seed, output_counter(origin, logical, n, c, od, oh, ow))
                        target[c] = draw * weight_sum[c] if weight_sum[c] > 0 else np.float64(int(draw * count))
                        picked[c] = -1
                        last[c] = -1
                    running = plain_sum  # reused as the running weight sums
                    running[:] = 0.0
                    for d in range(d_first, d_stop):
                        for h in range(h_first, h_stop):
                            for w in range(w_first, w_stop):
                                flat = flat_plane_index(d, h, w, height, width)
                                source = x[n, d, h, w]
                                for c in range(channels):
                                    value = source[c]
                                    weighted = weight_sum[c] > 0
                                    if weighted and not value > 0:
                                        continue
                                    running[c] += np.float64(value) if weighted else 1.0
                                    last[c] = flat
                                    if picked[c] < 0 and running[c] > target[c]:
                                        picked[c] = flat
                                        target_row[c] = value
                    for c in range(channels):
                        if picked[c] < 0:  # rounding left the target at the very top: the last candidate
                            picked[c] = last[c]
                            target_row[c] = x[n, last[c] // (height * width), (last[c] // width) % height, last[c] % width, c]
                else:
                    for c in range(channels):
                        target_row[c] = square_sum[c] / weight_sum[c] if weight_sum[c] > 0 else plain_sum[c] / count
                for c in range(channels):
                    if first_nan[c] >= 0:
                        picked[c] = first_nan[c]
                        target_row[c] = np.nan
                if store_indices:
                    index_row = indices[n, od, oh, ow]
                    for c in range(channels):
                        index_row[c] = picked[c]


@njit(**KERNEL_OPTIONS)
def stochastic_pool_inference_backward(x, grad_output, kernel, stride, padding, grad_input):
    """Exact gradient of the inference output sum(w * a) / sum(w), w = max(a, 0).

    For S = sum(w) > 0 the element a_i > 0 receives (2 a_i S - sum(w^2)) / S^2;
    for S = 0 the output is the window mean and each element receives 1 / count.
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
                    weight_sum, square_sum, _, count, _ = window_statistics(plane, box)
                    grad = np.float64(grad_output[n, c, od, oh, ow])
                    for d in range(d_first, d_stop):
                        for h in range(h_first, h_stop):
                            for w in range(w_first, w_stop):
                                value = np.float64(plane[d, h, w])
                                if weight_sum <= 0:
                                    target[d, h, w] += grad / count
                                elif value > 0:
                                    target[d, h, w] += grad * (2.0 * value * weight_sum - square_sum) / (weight_sum * weight_sum)
