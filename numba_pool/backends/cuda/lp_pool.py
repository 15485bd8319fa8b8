"""Lp-norm pooling on CUDA: one thread per output (forward); backward in two launches, one thread per
window (its coefficient) then one per input element (the gather over its covering windows).

Every value comes from the CPU module's scalar rules (``shared_with_cpu``), in float64 and in the
CPU's order, so the two backends agree bit for bit.
"""

import numpy as np
from numba import cuda, float64

from ..cpu import lp_pool as rules
from ._arrays import empty
from ._launch import arrays, channels_fastest, launch, on_device, per_element, shared_with_cpu

window_box = shared_with_cpu(rules.window_box)
window_power_sum = shared_with_cpu(rules.window_power_sum)
window_output = shared_with_cpu(rules.window_output)
window_coefficient = shared_with_cpu(rules.window_coefficient)
coefficient_share = shared_with_cpu(rules.coefficient_share)
input_gradient = shared_with_cpu(rules.input_gradient)
flat_plane_index = shared_with_cpu(rules.flat_plane_index)


@cuda.jit(device=True)
def _window_norm(args, n, c, od, oh, ow):
    x, out, kernel, stride, padding, d_scales, h_scales, w_scales, p, inverse_p = args
    plane = x[n, c]
    box = window_box(plane.shape, kernel, stride, padding, od, oh, ow)
    total, _ = window_power_sum(plane, box, p)
    scale = (d_scales[od] * h_scales[oh]) * w_scales[ow]
    out[n, c, od, oh, ow] = window_output(total, scale, p, inverse_p)


_lp_forward = per_element(_window_norm)


def lp_pool_forward(x, window, scales, norm, out):
    """Entry of ops.lp_pool.Kernels: canonical views; ``norm`` = (p, 1/p, 1/p - 1, p - 1)."""
    p, inverse_p, _, _ = norm
    device_scales = tuple(on_device(scale) for scale in scales)
    args = (*arrays(x, out), *window, *device_scales, np.float64(p), np.float64(inverse_p))
    launch(_lp_forward, out.shape, channels_fastest(x), args, x.stream)


@cuda.jit(device=True)
def _window_coefficient(args, n, c, od, oh, ow):
    x, grad_output, coefficients, maxima, kernel, stride, padding, d_scales, h_scales, w_scales, p, inverse_p_minus_one = args
    plane = x[n, c]
    box = window_box(plane.shape, kernel, stride, padding, od, oh, ow)
    total, argmax = window_power_sum(plane, box, p)
    scale = (d_scales[od] * h_scales[oh]) * w_scales[ow]
    grad = float64(grad_output[n, c, od, oh, ow])
    coefficients[n, c, od, oh, ow] = window_coefficient(total, scale, grad, p, inverse_p_minus_one)
    maxima[n, c, od, oh, ow] = argmax


_lp_coefficients = per_element(_window_coefficient)


@cuda.jit(device=True)
def _gather_shares(args, n, c, d, h, w):
    x, coefficients, maxima, grad_input, d_cover, h_cover, w_cover, p, p_minus_one = args
    flat = flat_plane_index(d, h, w, x.shape[3], x.shape[4])
    total = float64(0.0)
    for od in range(d_cover[0, d], d_cover[1, d]):
        for oh in range(h_cover[0, h], h_cover[1, h]):
            for ow in range(w_cover[0, w], w_cover[1, w]):
                total += coefficient_share(coefficients[n, c, od, oh, ow], maxima[n, c, od, oh, ow], flat, p)
    grad_input[n, c, d, h, w] = input_gradient(float64(x[n, c, d, h, w]), total, p, p_minus_one)


_lp_gather = per_element(_gather_shares)


def lp_pool_backward(x, grad_output, window, scales, covers, norm, grad_input):
    """Entry of ops.lp_pool.Kernels: each window's coefficient, then each input element's gather over ``covers``."""
    p, _, inverse_p_minus_one, p_minus_one = norm
    stream = x.stream
    coefficients = empty(grad_output.shape, np.float64, grad_output)
    maxima = empty(grad_output.shape, np.int64, grad_output)
    device_scales = tuple(on_device(scale) for scale in scales)
    device_covers = tuple(on_device(cover) for cover in covers)
    scratch = arrays(coefficients, maxima)
    args = (*arrays(x, grad_output), *scratch, *window, *device_scales, np.float64(p), np.float64(inverse_p_minus_one))
    launch(_lp_coefficients, grad_output.shape, channels_fastest(grad_output), args, stream)
    args = (*arrays(x), *scratch, *arrays(grad_input), *device_covers, np.float64(p), np.float64(p_minus_one))
    launch(_lp_gather, grad_input.shape, channels_fastest(grad_input), args, stream)


__all__ = ["lp_pool_backward", "lp_pool_forward"]
