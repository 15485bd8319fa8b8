"""Global average pooling on the CPU: one float64 sum per (n, c) plane, and its broadcast gradient."""

import math

import numpy as np
from numba import njit, prange

from ._common import KERNEL_OPTIONS, in_kernel_layout

# Every layout sums a plane in one order, so that results are identical whatever
# the memory layout: element i of the plane (flat index in (D, H, W) order) goes
# into partial sum i % 8, in increasing i, and the 8 partial sums are combined
# pairwise. Eight independent sums also keep the float64 adds pipelined and
# vectorisable without letting the compiler reorder anything.
LANES = 8


@njit(inline="always", cache=True)
def combine_lanes(s0, s1, s2, s3, s4, s5, s6, s7):
    """The plane sum from its 8 partial sums, in the fixed pairwise order."""
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@njit(inline="always", cache=True)
def lane_sums_of_row(row):
    """The 8 partial sums of a contiguous row (element i into sum i % 8)."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    length = row.shape[0]
    whole = length - length % LANES
    for j in range(0, whole, LANES):
        s0 += row[j]
        s1 += row[j + 1]
        s2 += row[j + 2]
        s3 += row[j + 3]
        s4 += row[j + 4]
        s5 += row[j + 5]
        s6 += row[j + 6]
        s7 += row[j + 7]
    rest = length - whole  # at most 7 elements, into the first lanes in order
    if rest > 0:
        s0 += row[whole]
    if rest > 1:
        s1 += row[whole + 1]
    if rest > 2:
        s2 += row[whole + 2]
    if rest > 3:
        s3 += row[whole + 3]
    if rest > 4:
        s4 += row[whole + 4]
    if rest > 5:
        s5 += row[whole + 5]
    if rest > 6:
        s6 += row[whole + 6]
    return s0, s1, s2, s3, s4, s5, s6, s7


@njit(**KERNEL_OPTIONS)
def _forward_channels_first(x, out):
    """out[n, c] = mean of plane x[n, c] (x: (N, C, D, H, W) with any strides, out: (N, C))."""
    batch, channels = x.shape[0], x.shape[1]
    scale = 1.0 / (x.shape[2] * x.shape[3] * x.shape[4])
    for nc in prange(batch * channels):
        plane = x[nc // channels, nc % channels]
        lanes = np.zeros(LANES, np.float64)
        i = 0
        for d in range(plane.shape[0]):
            for h in range(plane.shape[1]):
                for w in range(plane.shape[2]):
                    lanes[i] += plane[d, h, w]
                    i = i + 1 if i < LANES - 1 else 0
        total = combine_lanes(lanes[0], lanes[1], lanes[2], lanes[3], lanes[4], lanes[5], lanes[6], lanes[7])
        out[nc // channels, nc % channels] = total * scale


@njit(**KERNEL_OPTIONS)
def _forward_flat(planes, out):
    """out[i] = mean of planes[i]: ``global_avg_forward`` for contiguous planes seen as rows of (N * C, D * H * W)."""
    scale = 1.0 / planes.shape[1]
    for i in prange(planes.shape[0]):
        s0, s1, s2, s3, s4, s5, s6, s7 = lane_sums_of_row(planes[i])
        out[i] = combine_lanes(s0, s1, s2, s3, s4, s5, s6, s7) * scale


@njit(**KERNEL_OPTIONS)
def _forward_channels_last(x, out):
    """``global_avg_forward`` on (N, D, H, W, C) views: one thread per image, summing all channels at once."""
    batch, depth, height, width, channels = x.shape
    scale = 1.0 / (depth * height * width)
    for n in prange(batch):
        lanes = np.zeros((LANES, channels), np.float64)
        i = 0
        for d in range(depth):
            for h in range(height):
                for w in range(width):
                    source = x[n, d, h, w]
                    lane = lanes[i]
                    for c in range(channels):
                        lane[c] += source[c]
                    i = i + 1 if i < LANES - 1 else 0
        for c in range(channels):
            total = combine_lanes(
                lanes[0, c], lanes[1, c], lanes[2, c], lanes[3, c], lanes[4, c], lanes[5, c], lanes[6, c], lanes[7, c]
            )
            out[n, c] = total * scale


@njit(**KERNEL_OPTIONS)
def _backward_channels_first(grad_output, grad_input):
    """grad_input[n, c] = grad_output[n, c] / plane size everywhere (grad_input: (N, C, D, H, W))."""
    batch, channels = grad_input.shape[0], grad_input.shape[1]
    scale = 1.0 / (grad_input.shape[2] * grad_input.shape[3] * grad_input.shape[4])
    for nc in prange(batch * channels):
        grad_input[nc // channels, nc % channels] = grad_output[nc // channels, nc % channels] * scale


@njit(**KERNEL_OPTIONS)
def _backward_channels_last(grad_output, grad_input):
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


# --------------------------------------------------------------------------- the backend contract
# Entries of ops.global_pool.AvgKernels: canonical (N, C, D, H, W) views in. The CPU picks its kernel here: the channels-last kernels
# when the channels are innermost in memory (``in_kernel_layout``), the channels-first ones otherwise.


def global_avg_pool_forward(x, out):
    """The mean of each (n, c) plane of ``x`` into ``out``, of shape (N, C)."""
    last, (view,) = in_kernel_layout(x, x)
    if last:
        _forward_channels_last(view, out)
    elif view.flags.c_contiguous and out.flags.c_contiguous:  # whole planes are contiguous rows: sum them flat
        planes = view.shape[0] * view.shape[1]
        _forward_flat(view.reshape(planes, math.prod(view.shape[2:])), out.reshape(planes))
    else:
        _forward_channels_first(view, out)


def global_avg_pool_backward(grad_output, grad_input):
    """Each element of a plane of ``grad_input`` gets its share of the plane's gradient in ``grad_output`` (N, C)."""
    last, (grad_input,) = in_kernel_layout(grad_input, grad_input)
    if last:
        _backward_channels_last(grad_output, grad_input)
    else:
        _backward_channels_first(grad_output, grad_input)


__all__ = ["global_avg_pool_backward", "global_avg_pool_forward"]
