"""Lp-norm pooling on the CPU: one forward and one backward kernel on canonical views of any memory.

The scalar rules below are the whole arithmetic of the op; the CUDA kernels call
the same functions (``shared_with_cpu``), so both backends compute the same
float64 values in the same order. A window's power sum S = sum(x**p) over its
in-input elements gives ``(S * scale) ** (1/p)``, ``scale`` being prod(kernel)
over the window's size counted with padding (PyTorch's average of x**p times
the kernel size). p = inf is max pooling of |x|, NaN-aware as max pooling is.

The backward is a gather in two parallel passes of one kernel: each window's
coefficient ``grad * scale * z ** (1/p - 1)`` (z = S * scale; 0 where z == 0,
as PyTorch's autograd gives), then each input element's sum over the windows
covering it, times ``x ** (p - 1)``. No atomics; thread count changes nothing.
"""

import numpy as np
from numba import njit, prange

from ._common import KERNEL_OPTIONS, flat_plane_index, replaces_maximum, unravel_row, window_extent


@njit(inline="always", cache=True)
def window_box(shape, kernel, stride, padding, od, oh, ow):
    """The window of output (od, oh, ow) clipped to a (D, H, W) ``shape``: (d_first, d_stop, h_first, h_stop, w_first, w_stop)."""
    d_first, d_stop, _ = window_extent(od * stride[0] - padding[0], kernel[0], shape[0], padding[0])
    h_first, h_stop, _ = window_extent(oh * stride[1] - padding[1], kernel[1], shape[1], padding[1])
    w_first, w_stop, _ = window_extent(ow * stride[2] - padding[2], kernel[2], shape[2], padding[2])
    return d_first, d_stop, h_first, h_stop, w_first, w_stop


@njit(inline="always", cache=True)
def window_power_sum(plane, box, p):
    """(sum of x**p in float64 in box order, -1); for p = inf (largest |x|, its flat plane index) by ``replaces_maximum``."""
    d_first, d_stop, h_first, h_stop, w_first, w_stop = box
    height, width = plane.shape[1], plane.shape[2]
    total = np.float64(0.0)
    best_index = -1
    if p == np.inf:
        for d in range(d_first, d_stop):
            for h in range(h_first, h_stop):
                for w in range(w_first, w_stop):
                    value = abs(np.float64(plane[d, h, w]))
                    if replaces_maximum(value, total, best_index >= 0):
                        total = value
                        best_index = flat_plane_index(d, h, w, height, width)
        return total, best_index
    for d in range(d_first, d_stop):
        for h in range(h_first, h_stop):
            for w in range(w_first, w_stop):
                total += np.float64(plane[d, h, w]) ** p
    return total, best_index


@njit(inline="always", cache=True)
def window_output(total, scale, p, inverse_p):
    """The output of a window from its ``window_power_sum`` total (NaN for a negative sum and fractional 1/p)."""
    if p == np.inf:
        return total
    return (total * scale) ** inverse_p


@njit(inline="always", cache=True)
def window_coefficient(total, scale, grad, p, inverse_p_minus_one):
    """What each element of a window gets before its own factor: ``grad * scale * z ** (1/p - 1)``, z = total * scale.

    0 where z == 0 (PyTorch's autograd masks those windows through its relu); p = inf: ``grad``.
    """
    if p == np.inf:
        return grad
    z = total * scale
    if z == 0.0:
        return 0.0
    return grad * scale * z ** inverse_p_minus_one


@njit(inline="always", cache=True)
def coefficient_share(coefficient, window_argmax, flat, p):
    """The part of a covering window's coefficient for the element at ``flat`` (p = inf: only its argmax's)."""
    if p == np.inf and window_argmax != flat:
        return 0.0
    return coefficient


@njit(inline="always", cache=True)
def input_gradient(value, coefficient_sum, p, p_minus_one):
    """An element's gradient from its covering windows' summed shares: times x**(p-1), or sign(x) for p = inf
    (0 for 0 and NaN, as ``torch.sign``)."""
    if p == np.inf:
        if value > 0:
            return coefficient_sum
        if value < 0:
            return -coefficient_sum
        return 0.0 * coefficient_sum
    return coefficient_sum * value ** p_minus_one


@njit(**KERNEL_OPTIONS)
def _lp_forward(x, kernel, stride, padding, d_scales, h_scales, w_scales, p, inverse_p, out):
    batch, channels, depth, height, width = x.shape
    out_depth, out_height, out_width = out.shape[2], out.shape[3], out.shape[4]
    for row in prange(batch * channels * out_depth * out_height):
        n, c, od, oh = unravel_row(row, channels, out_depth, out_height)
        plane = x[n, c]
        for ow in range(out_width):
            box = window_box(plane.shape, kernel, stride, padding, od, oh, ow)
            total, _ = window_power_sum(plane, box, p)
            scale = (d_scales[od] * h_scales[oh]) * w_scales[ow]
            out[n, c, od, oh, ow] = window_output(total, scale, p, inverse_p)


@njit(**KERNEL_OPTIONS)
def _lp_backward(x, grad_output, kernel, stride, padding, d_scales, h_scales, w_scales, d_cover, h_cover, w_cover,
                 p, inverse_p_minus_one, p_minus_one, coefficients, maxima, grad_input):
    batch, channels, depth, height, width = x.shape
    out_depth, out_height, out_width = grad_output.shape[2], grad_output.shape[3], grad_output.shape[4]
    for row in prange(batch * channels * out_depth * out_height):  # pass 1: one coefficient per window
        n, c, od, oh = unravel_row(row, channels, out_depth, out_height)
        plane = x[n, c]
        for ow in range(out_width):
            box = window_box(plane.shape, kernel, stride, padding, od, oh, ow)
            total, argmax = window_power_sum(plane, box, p)
            scale = (d_scales[od] * h_scales[oh]) * w_scales[ow]
            grad = np.float64(grad_output[n, c, od, oh, ow])
            coefficients[n, c, od, oh, ow] = window_coefficient(total, scale, grad, p, inverse_p_minus_one)
            maxima[n, c, od, oh, ow] = argmax
    for row in prange(batch * channels * depth * height):  # pass 2: each element gathers its windows' shares
        n, c, d, h = unravel_row(row, channels, depth, height)
        for w in range(width):
            flat = flat_plane_index(d, h, w, height, width)
            total = 0.0
            for od in range(d_cover[0, d], d_cover[1, d]):
                for oh in range(h_cover[0, h], h_cover[1, h]):
                    for ow in range(w_cover[0, w], w_cover[1, w]):
                        total += coefficient_share(coefficients[n, c, od, oh, ow], maxima[n, c, od, oh, ow], flat, p)
            grad_input[n, c, d, h, w] = input_gradient(np.float64(x[n, c, d, h, w]), total, p, p_minus_one)


# --------------------------------------------------------------------------- the backend contract
# Entries of ops.lp_pool.Kernels: canonical (N, C, D, H, W) views of any memory in.


def lp_pool_forward(x, window, scales, norm, out):
    """Each window's Lp norm; ``window`` = (kernel, stride, padding), ``norm`` = (p, 1/p, 1/p - 1, p - 1)."""
    p, inverse_p, _, _ = norm
    _lp_forward(x, *window, *scales, p, inverse_p, out)


def lp_pool_backward(x, grad_output, window, scales, covers, norm, grad_input):
    """The gradient of ``lp_pool_forward`` with respect to x, gathered over the ``covers`` of each element."""
    p, _, inverse_p_minus_one, p_minus_one = norm
    coefficients = np.empty(grad_output.shape, np.float64)
    maxima = np.empty(grad_output.shape, np.int64)
    _lp_backward(x, grad_output, *window, *scales, *covers, p, inverse_p_minus_one, p_minus_one, coefficients, maxima, grad_input)


__all__ = ["lp_pool_backward", "lp_pool_forward"]
