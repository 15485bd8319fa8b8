"""Global average pooling on the CPU: one float64 sum per (n, c) plane, and its broadcast gradient."""

import numpy as np
from numba import njit, prange

from ._common import KERNEL_OPTIONS

# Reassociating the float64 plane sums lets them vectorise. The order is fixed at
# compile time, so results stay deterministic; NaN and inf still propagate
# (no nnan/ninf flags).
SUM_OPTIONS = dict(KERNEL_OPTIONS, fastmath={"reassoc"})


@njit(**SUM_OPTIONS)
def global_avg_forward(x, out):
    """out[n, c] = mean of plane x[n, c] (x: (N, C, D, H, W), out: (N, C))."""
    batch, channels = x.shape[0], x.shape[1]
    scale = 1.0 / (x.shape[2] * x.shape[3] * x.shape[4])
    for nc in prange(batch * channels):
        plane = x[nc // channels, nc % channels]
        total = 0.0
        for d in range(plane.shape[0]):
            for h in range(plane.shape[1]):
                for w in range(plane.shape[2]):
                    total += plane[d, h, w]
        out[nc // channels, nc % channels] = total * scale


@njit(**SUM_OPTIONS)
def global_avg_forward_flat(planes, out):
    """out[i] = mean of planes[i]: ``global_avg_forward`` for contiguous planes seen as rows of (N * C, D * H * W)."""
    scale = 1.0 / planes.shape[1]
    for i in prange(planes.shape[0]):
        total = 0.0
        for j in range(planes.shape[1]):
            total += planes[i, j]
        out[i] = total * scale


@njit(**SUM_OPTIONS)
def global_avg_forward_channels_last(x, out):
    """``global_avg_forward`` on (N, D, H, W, C) views: one thread per image, summing all channels at once."""
    batch, depth, height, width, channels = x.shape
    scale = 1.0 / (depth * height * width)
    for n in prange(batch):
        totals = np.zeros(channels, np.float64)
        for d in range(depth):
            for h in range(height):
                for w in range(width):
                    source = x[n, d, h, w]
                    for c in range(channels):
                        totals[c] += source[c]
        for c in range(channels):
            out[n, c] = totals[c] * scale


@njit(**KERNEL_OPTIONS)
def global_avg_backward(grad_output, grad_input):
    """grad_input[n, c] = grad_output[n, c] / plane size everywhere (grad_input: (N, C, D, H, W))."""
    batch, channels = grad_input.shape[0], grad_input.shape[1]
    scale = 1.0 / (grad_input.shape[2] * grad_input.shape[3] * grad_input.shape[4])
    for nc in prange(batch * channels):
        grad_input[nc // channels, nc % channels] = grad_output[nc // channels, nc % channels] * scale


@njit(**KERNEL_OPTIONS)
def global_avg_backward_channels_last(grad_output, grad_input):
    """``global_avg_backward`` on (N, D, H, W, C) views, one output row per iteration."""
    batch, depth, height, width, channels = grad_input.shape
    scale = 1.0 / (depth * height * width)
    for row in prange(batch * depth * height):
        n = row // (depth * height)
        d = (row // height) % depth
        h = row % height
        shares = grad_output[n]
        for w in range(width):
            target = grad_input[n, d, h, w]
            for c in range(channels):
                target[c] = shares[c] * scale
