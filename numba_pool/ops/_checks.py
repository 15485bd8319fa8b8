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
