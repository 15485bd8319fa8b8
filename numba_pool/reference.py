"""A deliberately simple pure-NumPy oracle for every pooling op (the tests and `numba-pool check` use it).

Written independently of the kernels: explicit loops over output positions,
lists of window coordinates, NumPy reductions. Slow, but easy to check by eye.
All functions take and return batched channels-first arrays (N, C, *spatial);
the tests convert other layouts themselves.

About 370 lines: one short oracle per op and direction (every op in the registry
names its function here), kept in one file so that they read as one spec.
"""

from __future__ import annotations

import itertools
import math

import numpy as np


def output_length(length, kernel, stride, padding, dilation, ceil_mode):
    """PyTorch's output size rule, written out with real division."""
    exact = (length + 2 * padding - dilation * (kernel - 1) - 1) / stride
    count = (math.ceil(exact) if ceil_mode else math.floor(exact)) + 1
    if ceil_mode and (count - 1) * stride >= length + padding:
        count -= 1
    return count


def window_coordinates(start, kernel, dilation, length):
    """Coordinates of one window along one axis that fall inside the input, in order."""
    return [start + i * dilation for i in range(kernel) if 0 <= start + i * dilation < length]


def is_valid(spatial, kernel, stride, padding, dilation, ceil_mode):
    """Whether PyTorch-style pooling with these parameters is well defined.

    Padding at most half the kernel, a non-empty output, and (with dilation)
    no window made of padding alone.
    """
    for length, k, s, p, d in zip(spatial, kernel, stride, padding, dilation):
        if k < 1 or s < 1 or d < 1 or p < 0 or p > k // 2:
            return False
        count = output_length(length, k, s, p, d, ceil_mode)
        if count < 1:
            return False
        if any(not window_coordinates(o * s - p, k, d, length) for o in range(count)):
            return False
    return True


def output_shape(spatial, kernel, stride, padding, dilation, ceil_mode):
    return tuple(
        output_length(length, k, s, p, d, ceil_mode)
        for length, k, s, p, d in zip(spatial, kernel, stride, padding, dilation)
    )


def window_argmax(window):
    """PyTorch's pick along the last axis (window order): the last NaN if there is one, else the first maximum."""
    nan = np.isnan(window) if window.dtype.kind == "f" else np.zeros(window.shape, bool)
    last_nan = window.shape[-1] - 1 - np.argmax(nan[..., ::-1], axis=-1)
    return np.where(nan.any(axis=-1), last_nan, np.argmax(window, axis=-1))


def max_pool(x, kernel, stride, padding, dilation, ceil_mode):
    """(values, flat argmax indices); the first maximum wins ties, and the last NaN wins over numbers."""
    spatial = x.shape[2:]
    out_spatial = output_shape(spatial, kernel, stride, padding, dilation, ceil_mode)
    values = np.empty(x.shape[:2] + out_spatial, x.dtype)
    indices = np.empty(x.shape[:2] + out_spatial, np.int64)
    for position in itertools.product(*(range(n) for n in out_spatial)):
        axes = [
            window_coordinates(o * s - p, k, d, length)
            for o, s, p, k, d, length in zip(position, stride, padding, kernel, dilation, spatial)
        ]
        points = list(itertools.product(*axes))  # window order: last axis fastest
        window = np.stack([x[(slice(None), slice(None)) + point] for point in points], axis=-1)
        best = window_argmax(window)
        flat = np.array([np.ravel_multi_index(point, spatial) for point in points])
        values[(...,) + position] = np.take_along_axis(window, best[..., None], axis=-1)[..., 0]
        indices[(...,) + position] = flat[best]
    return values, indices


def max_pool_backward(grad_output, indices, spatial):
    n, c = grad_output.shape[:2]
    plane = int(np.prod(spatial))
    grad_input = np.zeros((n * c, plane), np.float64)
    rows = np.repeat(np.arange(n * c), int(np.prod(grad_output.shape[2:])))
    np.add.at(grad_input, (rows, indices.reshape(-1)), grad_output.reshape(-1).astype(np.float64))
    return grad_input.reshape((n, c) + tuple(spatial)).astype(grad_output.dtype)


def _avg_boxes(spatial, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override):
    """Yield (output position, input box as slices, divisor) for every window."""
    out_spatial = output_shape(spatial, kernel, stride, padding, (1,) * len(spatial), ceil_mode)
    for position in itertools.product(*(range(n) for n in out_spatial)):
        box, padded_count, input_count = [], 1, 1
        for o, s, p, k, length in zip(position, stride, padding, kernel, spatial):
            start = o * s - p
            stop = min(start + k, length + p)
            padded_count *= stop - start
            first, last = max(start, 0), min(stop, length)
            input_count *= max(last - first, 0)
            box.append(slice(first, last))
        if divisor_override:
            divisor = divisor_override
        else:
            divisor = padded_count if count_include_pad else input_count
        yield position, tuple(box), divisor, input_count


def avg_pool(x, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override):
    spatial = x.shape[2:]
    out_spatial = output_shape(spatial, kernel, stride, padding, (1,) * len(spatial), ceil_mode)
    result = np.zeros(x.shape[:2] + out_spatial, np.float64)
    wide = x.astype(np.float64)
    axes = tuple(range(2, x.ndim))
    for position, box, divisor, input_count in _avg_boxes(
        spatial, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override
    ):
        if input_count:
            result[(...,) + position] = wide[(...,) + box].sum(axis=axes) / divisor
    return result.astype(x.dtype)


def avg_pool_backward(grad_output, spatial, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override):
    grad_input = np.zeros(grad_output.shape[:2] + tuple(spatial), np.float64)
    for position, box, divisor, input_count in _avg_boxes(
        spatial, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override
    ):
        if input_count:
            share = grad_output[(...,) + position].astype(np.float64) / divisor
            grad_input[(...,) + box] += share.reshape(share.shape + (1,) * len(spatial))
    return grad_input.astype(grad_output.dtype)


def in_input_windows(spatial, kernel, stride, padding, ceil_mode):
    """Yield (output position, list of in-input points in window order) for a dilation-free pooling."""
    dilation = (1,) * len(spatial)
    out_spatial = output_shape(spatial, kernel, stride, padding, dilation, ceil_mode)
    for position in itertools.product(*(range(n) for n in out_spatial)):
        axes = [window_coordinates(o * s - p, k, 1, length) for o, s, p, k, length in zip(position, stride, padding, kernel, spatial)]
        yield position, list(itertools.product(*axes))


def _relative_weights(values):
    """Weights max(a, 0) divided by their largest (so that huge values cannot overflow), and whether
    they are infinite: then each +inf has weight 1 and everything else 0."""
    weights = np.maximum(values, 0)
    infinite = np.isinf(weights)
    if infinite.any():
        return infinite.astype(np.float64), True
    largest = weights.max() if weights.size else 0.0
    return (weights / largest if largest > 0 else weights), False


def stochastic_pool_inference(x, kernel, stride, padding, ceil_mode):
    """sum(w * a) / sum(w) with w = max(a, 0); the window mean when sum(w) == 0; NaN if the window has one;
    +inf if it holds +inf."""
    spatial = x.shape[2:]
    out_spatial = output_shape(spatial, kernel, stride, padding, (1,) * len(spatial), ceil_mode)
    result = np.empty(x.shape[:2] + out_spatial, np.float64)
    for position, points in in_input_windows(spatial, kernel, stride, padding, ceil_mode):
        for n, c in itertools.product(range(x.shape[0]), range(x.shape[1])):
            values = np.array([x[(n, c) + p] for p in points], np.float64)
            relative, infinite = _relative_weights(values)
            if np.isnan(values).any():
                expected = np.nan
            elif infinite:
                expected = np.inf
            elif relative.sum() > 0:
                largest = np.maximum(values, 0).max()
                expected = largest * ((relative**2).sum() / relative.sum())
            else:
                expected = values.mean()
            result[(n, c) + position] = expected
    return result.astype(x.dtype)


def stochastic_pool_inference_backward(x, grad_output, kernel, stride, padding, ceil_mode):
    """Gradient of the inference output, from the formula differentiated by hand (in relative weights, where
    it takes the same form); windows holding +inf share the gradient equally among their infinities."""
    spatial = x.shape[2:]
    grad_input = np.zeros(x.shape, np.float64)
    for position, points in in_input_windows(spatial, kernel, stride, padding, ceil_mode):
        for n, c in itertools.product(range(x.shape[0]), range(x.shape[1])):
            values = np.array([x[(n, c) + p] for p in points], np.float64)
            relative, infinite = _relative_weights(values)
            total, squares = relative.sum(), (relative**2).sum()
            g = float(grad_output[(n, c) + position])
            for value, weight, point in zip(values, relative, points):
                if total <= 0:
                    grad_input[(n, c) + point] += g / len(points)
                elif infinite:
                    grad_input[(n, c) + point] += g * weight / total
                elif value > 0:
                    grad_input[(n, c) + point] += g * (2 * weight * total - squares) / total**2
    return grad_input.astype(grad_output.dtype)


def adaptive_boxes(spatial, output_spatial):
    """Yield (output position, box as slices) with PyTorch's bins floor(i*L/out) .. ceil((i+1)*L/out)."""
    for position in itertools.product(*(range(n) for n in output_spatial)):
        yield position, tuple(
            slice(math.floor(i * length / out), math.ceil((i + 1) * length / out))
            for i, length, out in zip(position, spatial, output_spatial)
        )


def adaptive_max_pool(x, output_spatial):
    spatial = x.shape[2:]
    values = np.empty(x.shape[:2] + tuple(output_spatial), x.dtype)
    indices = np.empty(values.shape, np.int64)
    for position, box in adaptive_boxes(spatial, output_spatial):
        points = list(itertools.product(*(range(b.start, b.stop) for b in box)))
        window = np.stack([x[(slice(None), slice(None)) + p] for p in points], axis=-1)
        best = window_argmax(window)
        flat = np.array([np.ravel_multi_index(p, spatial) for p in points])
        values[(...,) + position] = np.take_along_axis(window, best[..., None], axis=-1)[..., 0]
        indices[(...,) + position] = flat[best]
    return values, indices


def adaptive_avg_pool(x, output_spatial):
    result = np.empty(x.shape[:2] + tuple(output_spatial), np.float64)
    axes = tuple(range(2, x.ndim))
    for position, box in adaptive_boxes(x.shape[2:], output_spatial):
        result[(...,) + position] = x[(...,) + box].astype(np.float64).mean(axis=axes)
    return result.astype(x.dtype)


def adaptive_avg_pool_backward(grad_output, spatial):
    grad_input = np.zeros(grad_output.shape[:2] + tuple(spatial), np.float64)
    for position, box in adaptive_boxes(spatial, grad_output.shape[2:]):
        size = np.prod([b.stop - b.start for b in box])
        share = grad_output[(...,) + position].astype(np.float64) / size
        grad_input[(...,) + box] += share.reshape(share.shape + (1,) * len(spatial))
    return grad_input.astype(grad_output.dtype)


def global_avg_pool(x):
    """The mean of each whole (n, c) plane, as (N, C): adaptive average pooling to size 1."""
    return adaptive_avg_pool(x, (1,) * (x.ndim - 2)).reshape(x.shape[:2])


def global_max_pool(x):
    """(maxima, flat argmax indices) of each whole (n, c) plane, as (N, C): adaptive max pooling to size 1."""
    values, indices = adaptive_max_pool(x, (1,) * (x.ndim - 2))
    return values.reshape(x.shape[:2]), indices.reshape(x.shape[:2])


def max_unpool(x, indices, output_spatial):
    """Zeros, then each value written at its flat index, in input order (later writes win)."""
    n, c = x.shape[:2]
    out = np.zeros((n, c, int(np.prod(output_spatial))), x.dtype)
    for plane in range(n * c):
        for value, index in zip(x.reshape(n * c, -1)[plane], indices.reshape(n * c, -1)[plane]):
            out[plane // c, plane % c, index] = value
    return out.reshape((n, c) + tuple(output_spatial))


def _lp_boxes(spatial, kernel, stride, padding, ceil_mode):
    """Yield (output position, input box as slices, prod(kernel) / window size counted with padding)."""
    for position, box, padded_count, _ in _avg_boxes(spatial, kernel, stride, padding, ceil_mode, True, None):
        yield position, box, math.prod(kernel) / padded_count


def lp_pool(x, norm_type, kernel, stride, ceil_mode, padding):
    """PyTorch's lp_pool: (sum(x**p) * prod(kernel) / window size) ** (1/p), padding contributing nothing;
    p = inf: the largest |x| (max pooling of |x|)."""
    spatial = x.shape[2:]
    if norm_type == np.inf:
        return max_pool(np.abs(x), kernel, stride, padding, (1,) * len(spatial), ceil_mode)[0]
    out_spatial = output_shape(spatial, kernel, stride, padding, (1,) * len(spatial), ceil_mode)
    result = np.zeros(x.shape[:2] + out_spatial, np.float64)
    wide = x.astype(np.float64)
    axes = tuple(range(2, x.ndim))
    with np.errstate(all="ignore"):
        for position, box, scale in _lp_boxes(spatial, kernel, stride, padding, ceil_mode):
            total = (wide[(...,) + box] ** norm_type).sum(axis=axes)
            result[(...,) + position] = (total * scale) ** (1.0 / norm_type)
    return result.astype(x.dtype)


def lp_pool_backward(x, grad_output, norm_type, kernel, stride, ceil_mode, padding):
    """The gradient of ``lp_pool`` as PyTorch's autograd gives it: 0 from a window whose power sum is 0;
    p = inf: each gradient to the window's (first) largest |x|, times sign(x) (0 for NaN, as torch.sign)."""
    spatial = x.shape[2:]
    wide = x.astype(np.float64)
    if norm_type == np.inf:
        _, indices = max_pool(np.abs(x), kernel, stride, padding, (1,) * len(spatial), ceil_mode)
        routed = max_pool_backward(grad_output.astype(np.float64), indices, spatial)
        sign = np.where(wide > 0, 1.0, np.where(wide < 0, -1.0, 0.0))
        return (routed * sign).astype(grad_output.dtype)
    coefficients = np.zeros(grad_output.shape[:2] + tuple(spatial), np.float64)
    axes = tuple(range(2, x.ndim))
    with np.errstate(all="ignore"):
        for position, box, scale in _lp_boxes(spatial, kernel, stride, padding, ceil_mode):
            z = (wide[(...,) + box] ** norm_type).sum(axis=axes) * scale
            g = grad_output[(...,) + position].astype(np.float64)
            share = np.where(z != 0, g * scale * z ** (1.0 / norm_type - 1.0), 0.0)
            coefficients[(...,) + box] += share.reshape(share.shape + (1,) * len(spatial))
        grad_input = coefficients * wide ** (norm_type - 1.0)
    return grad_input.astype(grad_output.dtype)


# PyTorch's fractional max pooling gives each (n, c) plane one sample per axis; its 2-D op reads
# sample 0 for the width and sample 1 for the height, its 3-D op samples 0, 1, 2 for D, H, W.
FRACTIONAL_SAMPLE_AXES = {1: (0,), 2: (1, 0), 3: (0, 1, 2)}  # spatial axis -> its sample's slot


def fractional_interval_starts(sample, length, kernel, count):
    """Graham's pseudo-random window starts along one axis, as PyTorch computes them: in the sample's
    own float type, alpha = (length - kernel) / (count - 1), start i = int((i + u) * alpha) - int(u * alpha),
    and the last window ends at the input's end."""
    real = type(sample)
    if count == 1:
        return [length - kernel]
    alpha = real(length - kernel) / real(count - 1)
    starts = [int((real(i) + sample) * alpha) - int(sample * alpha) for i in range(count - 1)]
    return starts + [length - kernel]


def fractional_max_pool(x, kernel, output_spatial, samples):
    """(maxima, flat argmax indices) of PyTorch's fractional max pooling; ``samples`` of shape (N, C, dims)
    in x's dtype, in PyTorch's order of axes (``FRACTIONAL_SAMPLE_AXES``)."""
    dims = x.ndim - 2
    spatial = x.shape[2:]
    values = np.empty(x.shape[:2] + tuple(output_spatial), x.dtype)
    indices = np.empty(values.shape, np.int64)
    for n, c in itertools.product(range(x.shape[0]), range(x.shape[1])):
        starts = [
            fractional_interval_starts(samples[n, c, FRACTIONAL_SAMPLE_AXES[dims][axis]], spatial[axis], kernel[axis], count)
            for axis, count in enumerate(output_spatial)
        ]
        for position in itertools.product(*(range(count) for count in output_spatial)):
            points = list(itertools.product(*(range(s[i], s[i] + k) for s, i, k in zip(starts, position, kernel))))
            window = np.array([x[(n, c) + p] for p in points])
            best = int(window_argmax(window))
            values[(n, c) + position] = window[best]
            indices[(n, c) + position] = np.ravel_multi_index(points[best], spatial)
    return values, indices


def fractional_avg_windows(sequence, length, overlapping):
    """TensorFlow's fractional average pooling windows along one axis from its cumulative pooling
    sequence (0, ..., length): window i spans sequence[i] to sequence[i + 1], and one element further
    (the boundary it shares with window i + 1) when ``overlapping``, clipped to the input."""
    return [(sequence[i], min(sequence[i + 1] + (1 if overlapping else 0), length)) for i in range(len(sequence) - 1)]


def fractional_avg_pool(x, sequences, overlapping):
    """The mean of each window (``fractional_avg_windows`` per axis, the same for every plane), in float64."""
    spatial = x.shape[2:]
    axes = [fractional_avg_windows(s, length, overlapping) for s, length in zip(sequences, spatial)]
    result = np.empty(x.shape[:2] + tuple(len(a) for a in axes), np.float64)
    for position in itertools.product(*(range(len(a)) for a in axes)):
        box = tuple(slice(*a[i]) for a, i in zip(axes, position))
        result[(...,) + position] = x[(...,) + box].astype(np.float64).mean(axis=tuple(range(2, x.ndim)))
    return result.astype(x.dtype)


def fractional_avg_pool_backward(grad_output, spatial, sequences, overlapping):
    """Each output's gradient spread evenly over its window."""
    axes = [fractional_avg_windows(s, length, overlapping) for s, length in zip(sequences, spatial)]
    grad_input = np.zeros(grad_output.shape[:2] + tuple(spatial), np.float64)
    for position in itertools.product(*(range(len(a)) for a in axes)):
        box = tuple(slice(*a[i]) for a, i in zip(axes, position))
        size = math.prod(b.stop - b.start for b in box)
        share = grad_output[(...,) + position].astype(np.float64) / size
        grad_input[(...,) + box] += share.reshape(share.shape + (1,) * len(spatial))
    return grad_input.astype(grad_output.dtype)
