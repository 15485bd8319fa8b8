"""Max pooling on the CPU: forward with optional argmax, backward routed by the argmax."""

from numba import njit, prange

from ._common import KERNEL_OPTIONS, flat_plane_index, replaces_maximum, unravel_row


@njit(**KERNEL_OPTIONS)
def max_pool_forward(x, kernel, stride, padding, dilation, out, indices, store_indices):
    """Write each window's maximum to ``out`` (and its flat plane index to ``indices``).

    Ties go to the first maximum in window order; the first NaN wins over any
    number, so NaN propagates. Padding is never picked: the first in-input
    element seeds the running maximum, which also makes integer dtypes work.
    """
    batch, channels, depth, height, width = x.shape
    out_depth, out_height, out_width = out.shape[2], out.shape[3], out.shape[4]
    kernel_d, kernel_h, kernel_w = kernel
    for row in prange(batch * channels * out_depth * out_height):
        n, c, od, oh = unravel_row(row, channels, out_depth, out_height)
        d_start = od * stride[0] - padding[0]
        h_start = oh * stride[1] - padding[1]
        for ow in range(out_width):
            w_start = ow * stride[2] - padding[2]
            best = x[n, c, 0, 0, 0]
            best_index = -1
            for i in range(kernel_d):
                d = d_start + i * dilation[0]
                if d < 0 or d >= depth:
                    continue
                for j in range(kernel_h):
                    h = h_start + j * dilation[1]
                    if h < 0 or h >= height:
                        continue
                    for k in range(kernel_w):
                        w = w_start + k * dilation[2]
                        if w < 0 or w >= width:
                            continue
                        value = x[n, c, d, h, w]
                        if replaces_maximum(value, best, best_index >= 0):
                            best = value
                            best_index = flat_plane_index(d, h, w, height, width)
            out[n, c, od, oh, ow] = best
            if store_indices:
                indices[n, c, od, oh, ow] = best_index


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
        for d in range(depth):
            for h in range(height):
                for w in range(width):
                    grad_input[n, c, d, h, w] = 0
        for od in range(out_depth):
            for oh in range(out_height):
                for ow in range(out_width):
                    index = indices[n, c, od, oh, ow]
                    d = index // plane
                    h = (index // width) % height
                    w = index % width
                    grad_input[n, c, d, h, w] += grad_output[n, c, od, oh, ow]
