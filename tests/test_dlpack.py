"""Arrays of other libraries in, through DLPack: read in place on the CPU, results as NumPy arrays."""

from __future__ import annotations

import numpy as np
import pytest

import numba_pool as nb
from numba_pool import _spec
from numba_pool.backends import _dispatch


class Exported:
    """A minimal DLPack producer (no __array__, no __cuda_array_interface__): NumPy memory underneath."""

    def __init__(self, array, device=(1, 0)):
        self.array, self.device = array, device

    def __dlpack__(self, **options):
        return self.array.__dlpack__(**options)

    def __dlpack_device__(self):
        return self.device


def test_any_dlpack_producer_is_pooled_in_place():
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 5)).astype(np.float32)
    view = x[:, :, ::-1, 1:]  # strided: read as it is, not copied
    exported = Exported(view)
    read = _spec.host_array(exported, "x", "max_pool2d")
    assert np.shares_memory(read, x) and read.strides == view.strides
    values, indices = nb.max_pool2d(exported, 2, return_indices=True)
    expected_values, expected_indices = nb.max_pool2d(view, 2, return_indices=True)
    np.testing.assert_array_equal(values, expected_values)
    np.testing.assert_array_equal(indices, expected_indices)
    gradient = nb.max_pool2d_backward(Exported(np.ones_like(values)), Exported(indices), view.shape)
    np.testing.assert_array_equal(gradient, nb.max_pool2d_backward(np.ones_like(values), indices, view.shape))


def test_a_dlpack_array_on_a_gpu_without_cuda_interface_is_refused_by_name():
    with pytest.raises(TypeError, match=r"avg_pool2d: x \(Exported\) is on DLPack device \(2, 0\).*from_dlpack"):
        nb.avg_pool2d(Exported(np.ones((1, 1, 4, 4)), device=(2, 0)), 2)


def test_torch_cpu_tensors_are_read_without_a_copy():
    torch = pytest.importorskip("torch")
    tensor = torch.randn(2, 3, 8, 8).transpose(2, 3)  # a strided view
    assert np.shares_memory(_spec.host_array(tensor, "x", "op"), tensor.numpy())
    for pool, theirs in ((nb.max_pool2d, torch.nn.functional.max_pool2d), (nb.avg_pool2d, torch.nn.functional.avg_pool2d)):
        ours = pool(tensor, 3, 2)
        assert type(ours) is np.ndarray
        np.testing.assert_allclose(ours, theirs(tensor, 3, 2).numpy(), rtol=1e-6, atol=1e-6)
    with pytest.raises(TypeError, match=r"max_pool2d: NumPy cannot read x \(Tensor\) through DLPack.*detach"):
        nb.max_pool2d(torch.ones(1, 1, 4, 4, requires_grad=True), 2)


def test_jax_cpu_arrays_run_on_the_cpu():
    """JAX arrays have a __cuda_array_interface__ property even in host memory; they used to be sent to the
    CUDA backend, which could not read them."""
    jnp = pytest.importorskip("jax.numpy")
    x = jnp.arange(32.0, dtype=jnp.float32).reshape(1, 2, 4, 4)
    assert not _dispatch.is_device_array(x)
    np.testing.assert_array_equal(nb.avg_pool2d(x, 2), nb.avg_pool2d(np.asarray(x), 2))


def test_host_arrays_dlpack_cannot_carry_are_read_by_their_own_conversion():
    """DLPack has no bfloat16 NumPy reads: JAX's bfloat16 arrays come through np.asarray (ml_dtypes)."""
    jnp = pytest.importorskip("jax.numpy")
    x = jnp.arange(16.0, dtype=jnp.bfloat16).reshape(1, 1, 4, 4)
    y = nb.avg_pool2d(x, 2)
    assert y.dtype.name == "bfloat16"
    np.testing.assert_array_equal(y.astype(np.float32), [[[[2.5, 4.5], [10.5, 12.5]]]])
