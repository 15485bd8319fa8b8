"""Index arrays of every integer dtype on the CUDA backend: the range check before any gather.

Runs on numba's CUDA simulator when the machine has no GPU (see conftest.py).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba_cuda", reason="the CUDA tests need numba-cuda (pip install -e '.[test]' installs it)")

from numba import cuda  # noqa: E402  (after the skip: numba.cuda needs numba-cuda)

import numba_pool as nb  # noqa: E402
from numba.cuda.core import config as _cuda_config  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

GRAD = np.ones((1, 1, 2, 2), np.float32)
SHAPE = (1, 1, 4, 4)  # planes of 16 elements: valid indices are 0..15


def _backward_on_both(indices):
    """The ValueError messages of max_pool2d_backward on the CPU and on the device, for the same indices."""
    messages = []
    for put in (np.asarray, lambda a: cuda.to_device(np.ascontiguousarray(a))):
        with pytest.raises(ValueError, match=r"^max_pool2d_backward: indices must lie in \[0, 16\)") as refused:
            nb.max_pool2d_backward(put(GRAD), put(indices), SHAPE)
        messages.append(str(refused.value))
    return messages


@pytest.mark.parametrize("huge", [2**63, 2**64 - 1])
def test_uint64_indices_beyond_int64_get_the_cpus_range_error(huge):
    indices = np.array([[[[0, 5], [huge, 7]]]], np.uint64)
    cpu_message, device_message = _backward_on_both(indices)
    assert device_message == cpu_message
    assert f"got values from 0 to {huge}" in device_message


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint32, np.int64, np.uint64])
def test_out_of_range_indices_of_any_integer_dtype(dtype):
    indices = np.array([[[[0, 5], [16, 7]]]], dtype)
    cpu_message, device_message = _backward_on_both(indices)
    assert device_message == cpu_message and "got values from 0 to 16" in device_message


@pytest.mark.parametrize("dtype", [np.uint8, np.uint64])
def test_valid_unsigned_indices_give_the_cpus_gradient(dtype):
    x = np.arange(16, dtype=np.float32).reshape(SHAPE)[..., ::-1].copy()
    _, indices = nb.max_pool2d(x, 2, return_indices=True)
    expected = nb.max_pool2d_backward(GRAD, indices.astype(dtype), SHAPE)
    got = nb.max_pool2d_backward(cuda.to_device(GRAD), cuda.to_device(indices.astype(dtype)), SHAPE)
    np.testing.assert_array_equal(got.copy_to_host(), expected)


class _BroadcastOut:
    """A device-array stand-in (simulator: device memory is host memory) whose elements all share one address."""

    def __init__(self):
        self.host = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), (1, 1, 2, 2), (0, 0, 0, 0))

    @property
    def __cuda_array_interface__(self):
        return {"shape": self.host.shape, "strides": self.host.strides, "typestr": self.host.dtype.str,
                "data": (self.host.ctypes.data, False), "version": 3, "stream": None}


@pytest.mark.skipif(not _cuda_config.ENABLE_CUDASIM, reason="the stand-in points at host memory: simulator only")
def test_out_with_repeated_elements_is_refused_on_the_device():
    x = cuda.to_device(np.ones((1, 1, 4, 4), np.float32))
    with pytest.raises(ValueError, match="out has elements that share memory"):
        nb.max_pool2d(x, 2, out=_BroadcastOut())
