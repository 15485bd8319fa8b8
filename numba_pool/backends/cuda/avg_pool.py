"""Average pooling on CUDA: one thread per output element; backward gathers over covering windows.

Sums accumulate in the array's dtype (float32 stays float32 on the GPU); the
per-axis scales are uploaded in that dtype, so no float64 arithmetic appears.
"""

from numba import cuda

from ..rules import window_extent
from ._launch import arrays, channels_fastest, launch, on_device, per_element

_TO_CANONICAL = (0, 4, 1, 2, 3)


@cuda.jit(device=True)
def _window_mean(args, n, c, od, oh, ow):
    x, out, kernel, stride, padding, d_scales, h_scales, w_scales, zero = args
    d_first, d_stop, _ = window_extent(od * stride[0] - padding[0], kernel[0], x.shape[2], padding[0])
    h_first, h_stop, _ = window_extent(oh * stride[1] - padding[1], kernel[1], x.shape[3], padding[1])
    w_first, w_stop, _ = window_extent(ow * stride[2] - padding[2], kernel[2], x.shape[4], padding[2])
    total = zero  # of the data's dtype, so float32 sums stay float32
    for d in range(d_first, d_stop):
        for h in range(h_first, h_stop):
            for w in range(w_first, w_stop):
                total += x[n, c, d, h, w]
    out[n, c, od, oh, ow] = total * (d_scales[od] * h_scales[oh] * w_scales[ow])


_avg_forward = per_element(_window_mean)


def _scales_on_device(scales, dtype):
    return tuple(on_device(scale, dtype) for scale in scales)


def avg_pool_forward(x, window, scales, out):
    """Entry of ops.avg_pool.Kernels: canonical views; ``window`` = (kernel, stride, padding)."""
    args = (*arrays(x, out), *window, *_scales_on_device(scales, x.dtype), x.dtype.type(0))
    launch(_avg_forward, out.shape, channels_fastest(x), args, x.stream)


@cuda.jit(device=True)
def _gather_window_shares(args, n, c, d, h, w):
    grad_output, grad_input, d_cover, h_cover, w_cover, d_scales, h_scales, w_scales, zero = args
    total = zero
    for od in range(d_cover[0, d], d_cover[1, d]):
        for oh in range(h_cover[0, h], h_cover[1, h]):
            row_scale = d_scales[od] * h_scales[oh]
            for ow in range(w_cover[0, w], w_cover[1, w]):
                total += grad_output[n, c, od, oh, ow] * (row_scale * w_scales[ow])
    grad_input[n, c, d, h, w] = total


_avg_backward = per_element(_gather_window_shares)


def avg_pool_backward(grad_output, covers, scales, grad_input):
    """Entry of ops.avg_pool.Kernels: each input element gathers the scaled gradients of its covering windows."""
    stream = grad_output.stream
    device_covers = tuple(on_device(cover) for cover in covers)
    device_scales = _scales_on_device(scales, grad_output.dtype)
    args = (*arrays(grad_output, grad_input), *device_covers, *device_scales, grad_output.dtype.type(0))
    launch(_avg_backward, grad_input.shape, channels_fastest(grad_input), args, stream)


__all__ = ["avg_pool_backward", "avg_pool_forward"]
