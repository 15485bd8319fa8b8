"""Average pooling on the CPU: forward, and backward as a gather over covering windows."""

from numba import njit, prange

from ._common import KERNEL_OPTIONS, unravel_row, window_extent


@njit(inline="always", cache=True)
def window_divisor(starts, kernel, shape, padding, count_include_pad, divisor_override):
    """What the sum of the window starting at ``starts`` is divided by (0: empty window)."""
    padded_count = 1
    input_count = 1
    for axis in range(3):
        first, stop, padded_size = window_extent(starts[axis], kernel[axis], shape[axis], padding[axis])
        padded_count *= padded_size
        input_count *= max(stop - first, 0)
    if input_count == 0:
        return 0
    if divisor_override != 0:
        return divisor_override
    return padded_count if count_include_pad else input_count


@njit(**KERNEL_OPTIONS)
def avg_pool_forward(x, kernel, stride, padding, count_include_pad, divisor_override, out):
    """Write each window's mean (sum over the input part / divisor) to ``out``.

    Sums are accumulated in float64 whatever the dtype, then rounded once.
    """
    batch, channels, depth, height, width = x.shape
    shape = (depth, height, width)
    out_depth, out_height, out_width = out.shape[2], out.shape[3], out.shape[4]
    for row in prange(batch * channels * out_depth * out_height):
        n, c, od, oh = unravel_row(row, channels, out_depth, out_height)
        d_start = od * stride[0] - padding[0]
        h_start = oh * stride[1] - padding[1]
        d_first, d_stop, _ = window_extent(d_start, kernel[0], depth, padding[0])
        h_first, h_stop, _ = window_extent(h_start, kernel[1], height, padding[1])
        for ow in range(out_width):
            w_start = ow * stride[2] - padding[2]
            w_first, w_stop, _ = window_extent(w_start, kernel[2], width, padding[2])
            divisor = window_divisor((d_start, h_start, w_start), kernel, shape, padding, count_include_pad, divisor_override)
            total = 0.0
            for d in range(d_first, d_stop):
                for h in range(h_first, h_stop):
                    for w in range(w_first, w_stop):
                        total += x[n, c, d, h, w]
            out[n, c, od, oh, ow] = total / divisor if divisor != 0 else 0.0


@njit(inline="always", cache=True)
def covering_windows(position, kernel, stride, padding, out_length):
    """The range of windows (first, stop) whose span includes ``position``."""
    shifted = position + padding
    first = max(0, -((kernel - 1 - shifted) // stride))  # ceil((shifted - kernel + 1) / stride)
    stop = min(out_length, shifted // stride + 1)
    return first, stop


@njit(**KERNEL_OPTIONS)
def avg_pool_backward(grad_output, kernel, stride, padding, count_include_pad, divisor_override, grad_input):
    """Each input element gathers grad / divisor from every window that covers it.

    Each element is written exactly once, by one thread: no zero fill, no atomics.
    """
    batch, channels, depth, height, width = grad_input.shape
    shape = (depth, height, width)
    out_depth, out_height, out_width = grad_output.shape[2], grad_output.shape[3], grad_output.shape[4]
    for row in prange(batch * channels * depth * height):
        n, c, d, h = unravel_row(row, channels, depth, height)
        od_first, od_stop = covering_windows(d, kernel[0], stride[0], padding[0], out_depth)
        oh_first, oh_stop = covering_windows(h, kernel[1], stride[1], padding[1], out_height)
        for w in range(width):
            ow_first, ow_stop = covering_windows(w, kernel[2], stride[2], padding[2], out_width)
            total = 0.0
            for od in range(od_first, od_stop):
                for oh in range(oh_first, oh_stop):
                    for ow in range(ow_first, ow_stop):
                        starts = (od * stride[0] - padding[0], oh * stride[1] - padding[1], ow * stride[2] - padding[2])
                        divisor = window_divisor(starts, kernel, shape, padding, count_include_pad, divisor_override)
                        total += grad_output[n, c, od, oh, ow] / divisor
            grad_input[n, c, d, h, w] = total
