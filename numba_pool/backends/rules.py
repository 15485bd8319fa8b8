"""Scalar rules of pooling, written once and compiled into both the CPU and the CUDA kernels.

Each is an ``@njit(inline="always")`` function, which numba-cuda compiles into
``@cuda.jit`` kernels as well, so the two backends cannot drift apart: where a
plane position sits in flat order, a window's extent and its valid taps, the
NaN-aware maximum, and the output of a stochastic pooling window. A vectorised
CPU form that restates one of them names it in a comment ("rules.<name>") and
is tested against it in tests/test_rules.py.

Depends only on ``_rng`` (the stochastic rule draws its random number there).

About 330 lines: every rule the two backends share, each short, with the 16-bit
float conversions (bit rules both backends run) at the end.
"""

import math

import numpy as np
from numba import njit

from .._rng import uniform

# --------------------------------------------------------------------------- positions and windows


@njit(inline="always", cache=True)
def flat_plane_index(d, h, w, height, width):
    """Index of (d, h, w) in a C-ordered (D, H, W) plane."""
    return (d * height + h) * width + w


@njit(inline="always", cache=True)
def plane_position(index, height, width):
    """(d, h, w) of a flat index into a (D, H, W) plane: the inverse of ``flat_plane_index``.

    Two divisions (the others are products and differences), which matters on GPUs;
    ``index`` must lie in the plane (the front end checks indices before any kernel).
    """
    plane = height * width
    d = index // plane
    rest = index - d * plane
    h = rest // width
    return d, h, rest - h * width


@njit(inline="always", cache=True)
def window_extent(start, kernel, length, padding):
    """Clip a window to the input: (first, stop, size counted with padding).

    The padded size follows PyTorch: the window is first clipped to the
    padded input (relevant with ceil_mode), then to the input itself.
    """
    stop = min(start + kernel, length + padding)
    padded_size = stop - start
    return max(start, 0), min(stop, length), padded_size


@njit(inline="always", cache=True)
def valid_taps(start, kernel, dilation, length):
    """The taps i in [first, stop) of a window whose positions start + i * dilation lie in [0, length)."""
    if dilation == 1:  # the common case, without integer divisions
        return max(0, -start), min(kernel, length - start)
    first = 0 if start >= 0 else (dilation - 1 - start) // dilation
    stop = min(kernel, (length - start + dilation - 1) // dilation)
    return first, stop


# --------------------------------------------------------------------------- the NaN-aware maximum


@njit(inline="always", cache=True)
def replaces_seeded_maximum(value, best):
    """``replaces_maximum`` once a maximum is seeded: a larger value or any NaN wins.

    Bitwise operators keep it branch-free, so loops of selects over it vectorise.
    """
    return (value > best) | (value != value)


@njit(inline="always", cache=True)
def replaces_maximum(value, best, have_best):
    """Whether ``value``, met after ``best`` in window order, becomes the running maximum.

    PyTorch's rule (``val > maxval || isnan(val)``): the first element seeds the
    maximum, a larger value replaces it (ties keep the earlier element), and any
    NaN replaces it, so the last NaN in window order wins.
    """
    return not have_best or replaces_seeded_maximum(value, best)


@njit(inline="always", cache=True)
def box_maximum(plane, d_first, d_stop, h_first, h_stop, w_first, w_stop):
    """(maximum, flat plane index) of the box [d_first, d_stop) x [h_first, h_stop) x [w_first, w_stop)
    of a (D, H, W) ``plane``, by ``replaces_maximum`` in box order. The box must not be empty."""
    best = plane[d_first, h_first, w_first]
    best_index = -1
    for d in range(d_first, d_stop):
        for h in range(h_first, h_stop):
            for w in range(w_first, w_stop):
                value = plane[d, h, w]
                if replaces_maximum(value, best, best_index >= 0):
                    best = value
                    best_index = flat_plane_index(d, h, w, plane.shape[1], plane.shape[2])
    return best, best_index


@njit(inline="always", cache=True)
def beats_maximum(candidate, candidate_flat, best, best_flat):
    """``replaces_maximum`` for candidates met in any order, each with its flat plane index.

    Window order is increasing flat index, so: NaN beats any number, between two
    NaNs the larger index wins, between equal numbers the smaller index wins.
    A total order, so trees and tiles may combine partial maxima in any order.
    Bitwise operators keep it branch-free for vectorised loops.
    """
    candidate_nan = candidate != candidate
    best_nan = best != best
    return (
        (candidate > best)
        | (candidate_nan & (best == best))
        | ((candidate == best) & (candidate_flat < best_flat))
        | (candidate_nan & best_nan & (candidate_flat > best_flat))
    )


# --------------------------------------------------------------------------- the stochastic window
#
# Weights are the positive parts of the window's in-input elements. Training picks one element with
# probability weight / sum of weights (uniformly among the in-input elements when every weight is 0);
# inference returns the expected value of that pick. Weights are scaled by the power of two that brings
# the window's largest weight into [0.5, 1): exact, so ordinary windows give the results of unscaled
# arithmetic, while sums of huge values cannot overflow. A window holding +inf gives its infinite
# elements equal probability and every other element none; a NaN anywhere in the window gives NaN.
# The arithmetic is float64 on every backend: float32 running sums would pick different elements.

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
    """(output value, flat index of the picked element or -1) of one window, on either backend.

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


# --------------------------------------------------------------------------- float16 bits
# Both backends widen float16 arrays to float32 and round results back with these (cpu/_half.py,
# cuda/_half.py); tests/test_half_precision.py checks they equal NumPy's casts bit for bit. Integer
# arithmetic only: exact, NaN payloads kept, the same on every GPU.


@njit(inline="always", cache=True)
def float32_bits_of_float16(half):
    """The float32 bit pattern of the float16 with bits ``half`` (exact: every float16 is a float32)."""
    half = np.int64(half)
    sign = (half & 0x8000) << 16
    exponent = (half >> 10) & 0x1F
    mantissa = half & 0x3FF
    if exponent == 0x1F:  # infinity or NaN: the payload moves up with the mantissa
        return sign | 0x7F800000 | (mantissa << 13)
    if exponent != 0:
        return sign | ((exponent + 112) << 23) | (mantissa << 13)  # rebias 15 -> 127
    if mantissa == 0:
        return sign
    biased = 113  # a subnormal mantissa * 2**-24: shift it until its leading bit is the implicit one
    while mantissa & 0x400 == 0:
        mantissa <<= 1
        biased -= 1
    return sign | (biased << 23) | ((mantissa & 0x3FF) << 13)


@njit(inline="always", cache=True)
def float16_bits_of_float32(single):
    """The float16 bit pattern nearest the float32 with bits ``single`` (ties to even); NaN stays NaN
    with the upper bits of its payload, infinities and values from 65520 up become infinities."""
    single = np.int64(single)
    sign = (single >> 16) & 0x8000
    exponent = (single >> 23) & 0xFF
    mantissa = single & 0x7FFFFF
    if exponent == 0xFF:
        if mantissa == 0:
            return sign | 0x7C00
        payload = mantissa >> 13
        return sign | 0x7C00 | (payload if payload != 0 else 1)
    unbiased = exponent - 127
    if unbiased > 15:
        return sign | 0x7C00
    if unbiased >= -14:  # a normal float16: drop 13 mantissa bits, rounding (a carry may reach infinity)
        kept = ((unbiased + 15) << 10) | (mantissa >> 13)
        dropped = mantissa & 0x1FFF
        if dropped > 0x1000 or (dropped == 0x1000 and kept & 1 == 1):
            kept += 1
        return sign | kept
    if unbiased < -25:  # below half the smallest subnormal, 2**-24: rounds to zero
        return sign
    significand = mantissa | 0x800000  # value = significand * 2**(unbiased - 23); units of 2**-24 below
    shift = -unbiased - 1
    kept = significand >> shift
    dropped = significand & ((1 << shift) - 1)
    halfway = 1 << (shift - 1)
    if dropped > halfway or (dropped == halfway and kept & 1 == 1):
        kept += 1
    return sign | kept
