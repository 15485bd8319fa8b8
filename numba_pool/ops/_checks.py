"""What the op modules' checks share: comparisons for ``numba-pool check``, numba types for the PTX check.

An op module writes its own checks (``SelfCheck``, ``device_checks``, ``CudaKernel`` in
:mod:`numba_pool.ops.spec`); the tools that run them (``numba_pool.tools.selfcheck``,
``bench.gpu_check``, ``bench.cuda_compile_check``) only loop over the registry.
"""

from __future__ import annotations

import numpy as np


class Mismatch(AssertionError):
    pass


def expect_equal(got, expected, what: str) -> None:
    if got.shape != expected.shape or not np.array_equal(got, expected, equal_nan=True):
        raise Mismatch(what)


def expect_close(got, expected, what: str) -> None:
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=1e-5, atol=1e-6, equal_nan=True):
        raise Mismatch(what)


def random_window(rng):
    """(x of shape (N, C, H, W), kernel, stride, padding) with padding at most half the kernel."""
    kernel = tuple(int(k) for k in rng.integers(1, 4, 2))
    stride = tuple(int(s) for s in rng.integers(1, 3, 2))
    padding = tuple(int(rng.integers(0, k // 2 + 1)) for k in kernel)
    x = rng.standard_normal((2, 3, int(rng.integers(4, 9)), int(rng.integers(4, 9)))).astype(np.float32)
    return x, kernel, stride, padding


class KernelTypes:
    """The numba types of the CUDA kernels' arguments for one dtype (canonical 5-D views, per-axis tables)."""

    def __init__(self, dtype):
        from numba import from_dtype, types

        self.dtype = np.dtype(dtype)
        self.data = self.array(dtype)
        self.index = self.array(np.int64)
        self.scalar = from_dtype(self.dtype)
        self.flag = types.boolean
        self.int64 = types.int64
        self.uint64 = types.uint64
        self.triple = types.UniTuple(types.int64, 3)
        self.five = types.UniTuple(types.int64, 5)
        self.per_axis = self.array(dtype, 1, "C")
        self.ranges = self.array(np.int64, 2, "C")
        self.counts = self.array(np.int64, 1, "C")

    @staticmethod
    def array(dtype, ndim=5, layout="A"):
        from numba import from_dtype, types

        return types.Array(from_dtype(np.dtype(dtype)), ndim, layout)


# --------------------------------------------------------------------------- padding="same", written out


def same_padding_widths(spatial, kernel, stride) -> list[tuple[int, int]]:
    """Per axis, (before, after) of padding="same" as TensorFlow documents it: ceil(L / stride) outputs,
    the odd element of padding after the input. Written here independently of ``_spec``'s plan."""
    widths = []
    for length, k, s in zip(spatial, kernel, stride):
        total = max((-(-length // s) - 1) * s + k - length, 0)
        widths.append((total // 2, total - total // 2))
    return widths


def padded_for_same(x, kernel, stride, fill):
    """``x`` padded explicitly on its spatial axes by the 'same' widths, with ``fill``."""
    widths = same_padding_widths(x.shape[2:], kernel, stride)
    return np.pad(x.astype(np.float64), [(0, 0), (0, 0), *widths], constant_values=fill), widths


def max_pool_same(reference_max_pool, x, kernel, stride):
    """(values, indices) of max pooling with padding="same": the reference on the explicitly padded
    input, its flat indices moved back into the unpadded plane (a 2-D input)."""
    padded, ((top, _), (left, _)) = padded_for_same(x, kernel, stride, -np.inf)
    values, indices = reference_max_pool(padded, kernel, stride, (0, 0), (1, 1), False)
    rows, columns = np.divmod(indices, padded.shape[3])
    return values.astype(x.dtype), (rows - top) * x.shape[3] + (columns - left)


def avg_pool_same(reference_avg_pool, reference_avg_pool_backward, x, grad, kernel, stride):
    """(output, input gradient) of average pooling with padding="same" and the padding left out of the
    count (the 'same' default): window sums and counts from the reference on explicitly padded arrays."""
    padded, widths = padded_for_same(x, kernel, stride, 0.0)
    ones, _ = padded_for_same(np.ones_like(x), kernel, stride, 0.0)
    sums = reference_avg_pool(padded, kernel, stride, (0, 0), False, True, 1)
    counts = reference_avg_pool(ones, kernel, stride, (0, 0), False, True, 1)
    grad_padded = reference_avg_pool_backward(grad / counts, padded.shape[2:], kernel, stride, (0, 0), False, True, 1)
    inside = (Ellipsis, *(slice(before, before + n) for (before, _), n in zip(widths, x.shape[2:])))
    return sums / counts, grad_padded[inside]


def warm_gradient(y) -> np.ndarray:
    """A gradient for output ``y`` in a warm-up call: y's dtype, float32 for integer outputs (as a model's)."""
    return np.ones(y.shape, y.dtype if y.dtype.kind == "f" else np.float32)
