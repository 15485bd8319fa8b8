"""Stochastic pooling (Zeiler & Fergus, 2013) on the CPU.

Weights are the positive parts of the window's in-input elements. Training
picks one element with probability weight / sum of weights (uniformly among
the in-input elements when every weight is 0); inference returns the expected
value of that pick. The random number of each output element comes from
``uniform(seed, logical position)``, so picks do not depend on threads or layout.

Weights are scaled by the power of two that brings the window's largest weight
into [0.5, 1): the scaling is exact, so ordinary windows give the same results
as unscaled arithmetic, while sums of huge values (1e200, 1.7e308) cannot
overflow. A window holding +inf gives its infinite elements equal probability
(1 / number of infinities) and every other element none; its expected value is
+inf. A NaN anywhere in the window gives NaN.
"""

import math

import numpy as np
from numba import njit, prange

from .._rng import output_counter, uniform
from ._common import KERNEL_OPTIONS, flat_plane_index, unravel_row, window_extent

# The scale of a window whose largest weight is +inf: its weights are 1 for +inf, 0 otherwise.
INFINITE_WEIGHTS = 0.0


@njit(inline="always", cache=True)
def weight_scale(largest):
    """The exact power-of-two factor for a window whose largest weight is ``largest`` (``INFINITE_WEIGHTS`` for +inf).

    The exponent is capped so that the factor itself stays finite for subnormal weights.
    """
    if largest == np.inf:
        return INFINITE_WEIGHTS
    if not largest > 0:
        return 1.0
    exponent = math.frexp(largest)[1]
    return math.ldexp(1.0, min(-exponent, 1021))


@njit(inline="always", cache=True)
def scaled_weight(value, scale):
    """The weight of one element (a float64) in a window of the given scale."""
    if scale == INFINITE_WEIGHTS:
        return 1.0 if value == np.inf else 0.0
    return value * scale if value > 0 else 0.0


@njit(inline="always", cache=True)
def expected_value(weight_sum, square_sum, plain_sum, count, scale):
    """The inference output of a NaN-free window: sum(w * a) / sum(w), or the mean when every weight is 0."""
    if weight_sum > 0:
        if scale == INFINITE_WEIGHTS:
            return np.inf
        return (square_sum / weight_sum) / scale  # (sum(w^2) / sum(w)) in unscaled units, exactly
    return plain_sum / count


@njit(inline="always", cache=True)
def pick_target(draw, weight_sum, count):
    """The running weight (or, without weights, element count) that the picked element's running sum passes."""
    return draw * weight_sum if weight_sum > 0 else np.float64(int(draw * count))


@njit(inline="always", cache=True)
def inference_gradient(grad, value, weight_sum, square_sum, count, scale):
    """The share of ``grad`` (float64) that element ``value`` (float64) gets from one inference window.

    Finite weights: the exact derivative (2 a S - sum(w^2)) / S^2 of the expected value, in scaled
    units (it does not depend on the scale). Infinite weights: the output is +inf whatever the
    finite elements are, so they get nothing and the infinite elements share ``grad`` equally (the
    expected gradient of the pick). No weights: the window mean's 1 / count.
    """
    if not weight_sum > 0:
        return grad / count
    if scale == INFINITE_WEIGHTS:
        return grad / weight_sum if value == np.inf else 0.0
    if not value > 0:  # not weight > 0: a positive weight too small to survive the scaling still has this slope
        return 0.0
    weight = scaled_weight(value, scale)
    return grad * (2.0 * weight * weight_sum - square_sum) / (weight_sum * weight_sum)


@njit(inline="always", cache=True)
def window_statistics(plane, box):
    """(sum of weights, sum of squared weights, plain sum, element count, flat index of the first NaN or -1, scale).

    ``box`` is (d_first, d_stop, h_first, h_stop, w_first, w_stop), the window clipped to the input.
    Weights are scaled by ``scale`` (see ``weight_scale``); a first pass finds the largest.
    """
    d_first, d_stop, h_first, h_stop, w_first, w_stop = box
    height, width = plane.shape[1], plane.shape[2]
    largest = 0.0
    plain_sum = 0.0
    first_nan = -1
    for d in range(d_first, d_stop):
        for h in range(h_first, h_stop):
            for w in range(w_first, w_stop):
                value = np.float64(plane[d, h, w])
                if value != value and first_nan < 0:
                    first_nan = flat_plane_index(d, h, w, height, width)
                largest = max(largest, value)
                plain_sum += value
    scale = weight_scale(largest)
    weight_sum = 0.0
    square_sum = 0.0
    for d in range(d_first, d_stop):
        for h in range(h_first, h_stop):
            for w in range(w_first, w_stop):
                weight = scaled_weight(np.float64(plane[d, h, w]), scale)
                weight_sum += weight
                square_sum += weight * weight
    count = (d_stop - d_first) * (h_stop - h_first) * (w_stop - w_first)
    return weight_sum, square_sum, plain_sum, count, first_nan, scale


@njit(inline="always", cache=True)
def pick_element(plane, box, weight_sum, count, scale, draw):
    """(flat index, value) of the element in ``box`` that a uniform ``draw`` in [0, 1) selects.

    With weights, the first element whose running weight sum passes
    ``draw * sum``; without, the element numbered ``floor(draw * count)``.
    """
    d_first, d_stop, h_first, h_stop, w_first, w_stop = box
    height, width = plane.shape[1], plane.shape[2]
    target = pick_target(draw, weight_sum, count)
    running = 0.0
    last = -1
    last_value = plane[d_first, h_first, w_first]
    for d in range(d_first, d_stop):
        for h in range(h_first, h_stop):
            for w in range(w_first, w_stop):
                value = plane[d, h, w]
                if weight_sum > 0:
                    weight = scaled_weight(np.float64(value), scale)
                    if not weight > 0:
                        continue
                    running += weight
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
    weight_sum, square_sum, plain_sum, count, first_nan, scale = window_statistics(plane, box)
    if first_nan >= 0:
        return np.nan, first_nan
    if training:
        picked, value = pick_element(plane, box, weight_sum, count, scale, uniform(seed, counter))
        return np.float64(value), picked
    return expected_value(weight_sum, square_sum, plain_sum, count, scale), first_nan


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

    The same arithmetic in the same order as ``window_output``, so the same
    seed picks the same elements in either memory layout.
    """
    seed, origin, logical = draws
    batch, depth, height, width, channels = x.shape
    out_depth, out_height, out_width = out.shape[1], out.shape[2], out.shape[3]
    rows = batch * out_depth * out_height
    for block in prange(blocks):
        largest = np.empty(channels, np.float64)
        scale = np.empty(channels, np.float64)
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
                largest[:] = 0.0
                plain_sum[:] = 0.0
                first_nan[:] = -1
                for d in range(d_first, d_stop):  # first pass: NaN, largest weight, plain sum
                    for h in range(h_first, h_stop):
                        for w in range(w_first, w_stop):
                            flat = flat_plane_index(d, h, w, height, width)
                            source = x[n, d, h, w]
                            for c in range(channels):
                                value = np.float64(source[c])
                                if value != value and first_nan[c] < 0:
                                    first_nan[c] = flat
                                largest[c] = max(largest[c], value)
                                plain_sum[c] += value
                for c in range(channels):
                    scale[c] = weight_scale(largest[c])
                weight_sum[:] = 0.0
                square_sum[:] = 0.0
                for d in range(d_first, d_stop):  # second pass: scaled weights
                    for h in range(h_first, h_stop):
                        for w in range(w_first, w_stop):
                            source = x[n, d, h, w]
                            for c in range(channels):
                                weight = scaled_weight(np.float64(source[c]), scale[c])
                                weight_sum[c] += weight
                                square_sum[c] += weight * weight
                target_row = out[n, od, oh, ow]
                if training:
                    for c in range(channels):
                        draw = uniform(seed, output_counter(origin, logical, n, c, od, oh, ow))
                        target[c] = pick_target(draw, weight_sum[c], count)
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
                                    if weight_sum[c] > 0:
                                        weight = scaled_weight(np.float64(value), scale[c])
                                        if not weight > 0:
                                            continue
                                        running[c] += weight
                                    else:
                                        running[c] += 1.0
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
                        target_row[c] = expected_value(weight_sum[c], square_sum[c], plain_sum[c], count, scale[c])
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
