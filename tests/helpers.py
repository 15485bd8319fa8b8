"""The one tolerance rule and the call helpers that every test file uses."""

from __future__ import annotations

import numpy as np

import numba_pool

# Sums (average, adaptive, global, overlapping gradients) are added in another order than the
# reference adds them (blocked, threaded, on the GPU): they agree to a few ulps of the sum.
# Everything else (maxima, picks, indices, integers) must be equal.
FLOAT_TOLERANCES = {
    np.dtype(np.float32): dict(rtol=1e-6, atol=1e-6),
    np.dtype(np.float64): dict(rtol=1e-12, atol=1e-12),
}


def tolerance(dtype) -> dict:
    """``rtol`` and ``atol`` for results of this float dtype."""
    return FLOAT_TOLERANCES[np.dtype(dtype)]


def assert_matches(got, expected, dtype=None, err_msg: str = "") -> None:
    """``got`` equals ``expected``: exactly for integers and indices, to ``tolerance(dtype)`` for floats.

    ``dtype`` is the dtype the tolerance is for (by default ``got``'s). NaN matches NaN.
    """
    dtype = np.dtype(dtype if dtype is not None else np.asarray(got).dtype)
    if dtype.kind == "f":
        np.testing.assert_allclose(got, expected, **tolerance(dtype), err_msg=err_msg)
    else:
        np.testing.assert_array_equal(got, expected, err_msg=err_msg)


def assert_same_results(got, expected, *, exact: bool = True) -> None:
    """One result or a tuple of results: same shapes and dtypes, values bit for bit (``exact``) or
    to the float tolerance (sums)."""
    pairs = zip(got, expected, strict=True) if isinstance(expected, tuple) else [(got, expected)]
    for result, want in pairs:
        assert result.shape == want.shape and result.dtype == want.dtype, (result.shape, result.dtype, want.shape, want.dtype)
        if exact:
            np.testing.assert_array_equal(result, want)
        else:
            assert_matches(result, want)


def op(name: str, dims: int, direction: str = ""):
    """The public function: ``op("max_pool", 2)`` is ``max_pool2d``, ``op("max_pool", 2, "backward")``
    is ``max_pool2d_backward``, ``op("stochastic_pool", 1, "inference_backward")`` is
    ``stochastic_pool1d_inference_backward``."""
    suffix = f"_{direction}" if direction else ""
    return getattr(numba_pool, f"{name}{dims}d{suffix}")


def serial_twin(kernel):
    """A CPU kernel (or the Python function launching kernels) as small calls run it: the same code with
    ``prange`` as ``range`` (tests/test_small_work.py compares each twin with its parallel kernel), so a
    test calling a kernel directly adds no parallel compile per dtype."""
    from numba_pool.backends.cpu import _threading

    return _threading._small_work_twin(kernel)
