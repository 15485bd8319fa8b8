"""Channels-last device arrays through the ops whose outputs now follow the input's memory format
(adaptive pooling, unpooling, the stochastic inference gradient): the CPU's values, channels-last memory.

Runs on numba's CUDA simulator when the machine has no GPU (see conftest.py).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba_cuda", reason="the CUDA tests need numba-cuda (pip install -e '.[test]' installs it)")

from numba import cuda  # noqa: E402

import numba_pool as nb  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def channels_innermost(nhwc_result) -> bool:
    return nhwc_result.strides[-1] == nhwc_result.dtype.itemsize


def test_channels_last_device_arrays_give_the_cpu_results():
    x = np.random.default_rng(4).standard_normal((1, 4, 6, 3))  # (N, H, W, C)
    device_x = cuda.to_device(x)
    for name, call in [
        ("adaptive avg", lambda a: nb.adaptive_avg_pool2d(a, (3, 2), channels_last=True)),
        ("adaptive max", lambda a: nb.adaptive_max_pool2d(a, (3, 2), True, channels_last=True)),
        ("inference gradient", lambda a: nb.stochastic_pool2d_inference_backward(
            (a * 0 + 1)[:, ::2, ::2] if isinstance(a, np.ndarray) else cuda.to_device(np.ones((1, 2, 3, 3))), a, 2,
            channels_last=True)),
    ]:
        expected, got = call(x), call(device_x)
        expected, got = (expected, got) if isinstance(expected, tuple) else ((expected,), (got,))
        for e, g in zip(expected, got):
            assert channels_innermost(g), name
            np.testing.assert_allclose(g.copy_to_host(), e, rtol=1e-12, err_msg=name)
    y, indices = nb.adaptive_max_pool2d(x, (2, 3), True, channels_last=True)
    expected = nb.max_unpool2d(y, indices, 2, output_size=(4, 6), channels_last=True)
    got = nb.max_unpool2d(cuda.to_device(y), cuda.to_device(indices), 2, output_size=(4, 6), channels_last=True)
    assert channels_innermost(got)
    np.testing.assert_array_equal(got.copy_to_host(), expected)
