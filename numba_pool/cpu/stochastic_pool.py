"""Stochastic pooling (Zeiler & Fergus, 2013) on the CPU.

Weights are the positive parts of the window's in-input elements. Training
picks one element with probability weight / sum of weights (uniformly among
the in-input elements when every weight is 0); inference returns the expected
value of that pick. The random number of each output element comes from
``uniform(seed, logical position)``, so picks do not depend on threads or layout.
"""

import numpy as np
from numba import njit, prange

from .._rng import uniform
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
    """Flat index of the element in ``box`` that a uniform ``draw`` in [0, 1) selects."""
    d_first, d_stop, h_first, h_stop, w_first, w_stop = box
    height, width = plane.shape[1], plane.shape[2]
    # With weights, walk the cumulative sum; without, take the k-th element.
    target = draw * weight_sum if weight_sum > 0 else np.float64(int(draw * count))
    running = 0.0
    last = -1
    for d in range(d_first, d_stop):
        for h in range(h_first, h_stop):
            for w in range(w_first, w_stop):
                value = np.float64(plane[d, h, w])
                if weight_sum > 0:
                    if value <= 0:
                        continue
                    running += value
                else:
                    running += 1.0
                last = flat_plane_index(d, h, w, height, width)
                if running > target:
                    return last
    return last  # only reached when rounding leaves the target at the very top


@njit(**KERNEL_OPTIONS)
def stochastic_pool_forward(x, kernel, stride, padding, seed, training, out, indices, store_indices):
    """Training: the picked element (and its flat index); inference: the expected value."""
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
            weight_sum, square_sum, plain_sum, count, first_nan = window_statistics(plane, box)
            picked = first_nan
            if first_nan >= 0:
                out[n, c, od, oh, ow] = np.nan
            elif training:
                counter = row * out_width + ow  # the logical (N, C, D, H, W) position of this output
                picked = pick_element(plane, box, weight_sum, count, uniform(seed, counter))
                out[n, c, od, oh, ow] = plane[picked // (height * width), (picked // width) % height, picked % width]
            elif weight_sum > 0:
                out[n, c, od, oh, ow] = square_sum / weight_sum
            else:
                out[n, c, od, oh, ow] = plain_sum / count
            if store_indices:
                indices[n, c, od, oh, ow] = picked


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
