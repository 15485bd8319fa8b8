"""Stochastic pooling on CUDA, with the CPU's scalar rule and random numbers.

Each thread runs ``rules.window_output`` (or, backward, ``rules.window_statistics``
and ``rules.inference_gradient``) on its window and draws ``uniform(seed, logical
output position)``, so a seed picks exactly the elements the CPU picks. The pick
arithmetic is float64 on purpose: float32 running sums would round differently
and pick different elements.
"""

import numpy as np
from numba import cuda, float64

from ..._spec import window_covers
from ..._rng import output_counter
from .. import rules
from ..rules import window_extent
from ._launch import arrays, channels_fastest, launch, no_indices, per_element, shared_with_cpu, uploaded

window_statistics = shared_with_cpu(rules.window_statistics)
window_output = shared_with_cpu(rules.window_output)
inference_gradient = shared_with_cpu(rules.inference_gradient)

_TO_CANONICAL = (0, 4, 1, 2, 3)


@cuda.jit(device=True)
def _window_box(x, kernel, stride, padding, od, oh, ow):
    """The window of output (od, oh, ow) clipped to the input: (d_first, d_stop, h_first, h_stop, w_first, w_stop)."""
    d_first, d_stop, _ = window_extent(od * stride[0] - padding[0], kernel[0], x.shape[2], padding[0])
    h_first, h_stop, _ = window_extent(oh * stride[1] - padding[1], kernel[1], x.shape[3], padding[1])
    w_first, w_stop, _ = window_extent(ow * stride[2] - padding[2], kernel[2], x.shape[4], padding[2])
    return d_first, d_stop, h_first, h_stop, w_first, w_stop


@cuda.jit(device=True)
def _stochastic_output(args, n, c, od, oh, ow):
    x, out, indices, kernel, stride, padding, seed, origin, logical, training, store_indices = args
    counter = output_counter(origin, logical, n, c, od, oh, ow)
    box = _window_box(x, kernel, stride, padding, od, oh, ow)
    value, picked = window_output(x[n, c], box, training, seed, counter)
    out[n, c, od, oh, ow] = value
    if store_indices:
        indices[n, c, od, oh, ow] = picked


_stochastic_forward = per_element(_stochastic_output)


def stochastic_pool_forward(x, window, draws, training, out, indices):
    """Entry of ops.stochastic_pool.Kernels: canonical views; ``window`` = (kernel, stride, padding)."""
    seed, origin, logical = draws
    store_indices = indices is not None
    index_argument = arrays(indices)[0] if store_indices else no_indices()
    args = (*arrays(x, out), index_argument, *window, np.uint64(seed), origin, logical, training, store_indices)
    launch(_stochastic_forward, out.shape, channels_fastest(x), args, x.stream)


@cuda.jit(device=True)
def _inference_gradient(args, n, c, d, h, w):
    """The CPU's formula, summed over the covering windows in window order into grad_input's dtype."""
    x, grad_output, grad_input, kernel, stride, padding, d_cover, h_cover, w_cover = args
    plane = x[n, c]
    value = float64(plane[d, h, w])
    grad_input[n, c, d, h, w] = 0
    for od in range(d_cover[0, d], d_cover[1, d]):
        for oh in range(h_cover[0, h], h_cover[1, h]):
            for ow in range(w_cover[0, w], w_cover[1, w]):
                box = _window_box(x, kernel, stride, padding, od, oh, ow)
                weight_sum, square_sum, _, count, _, scale = window_statistics(plane, box)
                grad = float64(grad_output[n, c, od, oh, ow])
                grad_input[n, c, d, h, w] += inference_gradient(grad, value, weight_sum, square_sum, count, scale)


_inference_backward = per_element(_inference_gradient)


def stochastic_pool_inference_backward(x, grad_output, window, grad_input):
    """Entry of ops.stochastic_pool.Kernels: the exact gradient of the inference output."""
    kernel, stride, padding = window
    stream = x.stream
    covers = window_covers(x.shape[2:], grad_output.shape[2:], kernel, stride, padding)
    device_covers = tuple(uploaded(cover, stream=stream) for cover in covers)
    args = (*arrays(x, grad_output, grad_input), kernel, stride, padding, *device_covers)
    launch(_inference_backward, grad_input.shape, channels_fastest(grad_input), args, stream)


__all__ = ["stochastic_pool_forward", "stochastic_pool_inference_backward"]
