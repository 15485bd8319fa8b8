"""The CUDA backend against the CPU backend, op by op, on tiny random inputs.

Runs on numba's CUDA simulator when the machine has no GPU (see conftest.py)
and on the real device otherwise. Max pooling, stochastic picks, routed
gradients and unpooling must agree with the CPU bit for bit; sums (average,
adaptive, global) accumulate in the data's dtype on the GPU and agree to
rounding.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("numba_cuda", reason="the CUDA tests need numba-cuda (pip install -e '.[test]' installs it)")

from numba import cuda  # noqa: E402  (after the skip: numba.cuda needs numba-cuda)

import numba_pool as nb  # noqa: E402
from numba_pool.backends import _dispatch  # noqa: E402
from cases import random_case, random_values  # noqa: E402

from numba.cuda.core import config as _cuda_config  # noqa: E402

SIMULATOR = bool(_cuda_config.ENABLE_CUDASIM)
SEEDS = range(6)

# The simulator runs kernels as Python on NumPy scalars, which warn where a GPU silently
# gives inf or NaN (inf - inf in a window sum, for one); the results are compared all the same.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


# --------------------------------------------------------------------------- helpers


def to_device(array: np.ndarray, view: str = "contiguous"):
    """A numba device array holding ``array``; "step" puts it behind non-unit strides."""
    if view == "step":
        wide = np.zeros(array.shape[:-1] + (2 * array.shape[-1],), array.dtype)
        wide[..., ::2] = array
        return cuda.to_device(wide)[..., ::2]
    return cuda.to_device(np.ascontiguousarray(array))


def to_host(result):
    if isinstance(result, tuple):
        return tuple(to_host(item) for item in result)
    assert _dispatch.is_device_array(result), f"expected a device array, got {type(result).__name__}"
    return result.copy_to_host()


def assert_same(device_result, host_result):
    got, expected = to_host(device_result), host_result
    pairs = zip(got, expected) if isinstance(expected, tuple) else [(got, expected)]
    for g, e in pairs:
        assert g.shape == e.shape and g.dtype == e.dtype
        np.testing.assert_array_equal(g, e)


def assert_close(device_result, host_result):
    got = to_host(device_result)
    assert got.shape == host_result.shape and got.dtype == host_result.dtype
    tolerance = 1e-5 if got.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, host_result, rtol=tolerance, atol=tolerance)


def device_case(seed: int, dims: int, **options):
    """A random case small enough for the simulator, and its view on the device."""
    rng = np.random.default_rng(seed)
    case = random_case(rng, dims, **options)
    view = "step" if rng.random() < 0.3 else "contiguous"
    return rng, case, view


def user_input(rng, case, special=True):
    shape = case.user_shape(case.spatial)
    return random_values(rng, shape, case.dtype, special=special)


def window_options(case):
    return dict(kernel_size=case.kernel, stride=case.stride, padding=case.padding, ceil_mode=case.ceil_mode)


# --------------------------------------------------------------------------- sliding windows


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", SEEDS)
def test_max_pool_forward_and_backward_match_the_cpu_bitwise(dims, seed):
    rng, case, view = device_case(seed, dims, dtypes=(np.float32, np.float64, np.int16, np.uint8))
    x = user_input(rng, case)
    forward = getattr(nb, f"max_pool{dims}d")
    options = dict(window_options(case), dilation=case.dilation, return_indices=True, channels_last=case.channels_last)
    y, indices = forward(x, **options)
    assert_same(forward(to_device(x, view), **options), (y, indices))

    grad = random_values(rng, y.shape, np.float32, special=False)
    backward = getattr(nb, f"max_pool{dims}d_backward")
    expected = backward(grad, indices, x.shape, channels_last=case.channels_last)
    got = backward(to_device(grad), to_device(indices, view), x.shape, channels_last=case.channels_last)
    assert_same(got, expected)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", SEEDS)
def test_avg_pool_forward_and_backward_match_the_cpu(dims, seed):
    rng, case, view = device_case(seed + 100, dims, dilation=False)
    x = user_input(rng, case, special=False)
    options = dict(
        window_options(case),
        count_include_pad=case.count_include_pad,
        divisor_override=case.divisor_override,
        channels_last=case.channels_last,
    )
    forward = getattr(nb, f"avg_pool{dims}d")
    y = forward(x, **options)
    assert_close(forward(to_device(x, view), **options), y)

    grad = random_values(rng, y.shape, case.dtype, special=False)
    backward = getattr(nb, f"avg_pool{dims}d_backward")
    assert_close(backward(to_device(grad, view), x.shape, **options), backward(grad, x.shape, **options))


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", SEEDS)
def test_stochastic_pool_picks_the_cpus_elements(dims, seed):
    rng, case, view = device_case(seed + 200, dims, dilation=False)
    x = user_input(rng, case)
    forward = getattr(nb, f"stochastic_pool{dims}d")
    options = dict(window_options(case), channels_last=case.channels_last)
    expected = forward(x, seed=seed, return_indices=True, **options)
    got = forward(to_device(x, view), seed=seed, return_indices=True, **options)
    assert_same(got, expected)
    assert_same(forward(to_device(x, view), training=False, **options), forward(x, training=False, **options))

    grad = random_values(rng, expected[0].shape, case.dtype, special=False)
    backward = getattr(nb, f"stochastic_pool{dims}d_backward")
    host_gradient = backward(grad, expected[1], x.shape, channels_last=case.channels_last)
    assert_same(backward(to_device(grad), got[1], x.shape, channels_last=case.channels_last), host_gradient)

    inference = getattr(nb, f"stochastic_pool{dims}d_inference_backward")
    x_finite = user_input(rng, case, special=False)
    expected_inference = inference(grad, x_finite, **options)
    assert_close(inference(to_device(grad), to_device(x_finite, view), **options), expected_inference)


# --------------------------------------------------------------------------- global, adaptive, unpool


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", SEEDS[:4])
def test_global_pooling_matches_the_cpu(dims, seed):
    rng, case, view = device_case(seed + 300, dims)
    x = user_input(rng, case, special=False)
    options = dict(channels_last=case.channels_last)
    keepdims = bool(rng.random() < 0.5)
    mean = getattr(nb, f"global_avg_pool{dims}d")(x, keepdims, **options)
    assert_close(getattr(nb, f"global_avg_pool{dims}d")(to_device(x, view), keepdims, **options), mean)
    grad = random_values(rng, mean.shape, case.dtype, special=False)
    mean_backward = getattr(nb, f"global_avg_pool{dims}d_backward")
    assert_close(mean_backward(to_device(grad), x.shape, **options), mean_backward(grad, x.shape, **options))

    with_nan = user_input(rng, case)
    maximum = getattr(nb, f"global_max_pool{dims}d")
    values, indices = maximum(with_nan, keepdims, True, **options)
    assert_same(maximum(to_device(with_nan, view), keepdims, True, **options), (values, indices))
    max_backward = getattr(nb, f"global_max_pool{dims}d_backward")
    expected = max_backward(grad, indices, x.shape, **options)
    assert_same(max_backward(to_device(grad), to_device(indices), x.shape, **options), expected)


def random_output_size(rng, spatial):
    return tuple(None if rng.random() < 0.2 else int(rng.integers(1, n + 3)) for n in spatial)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", SEEDS[:4])
def test_adaptive_pooling_matches_the_cpu(dims, seed):
    rng, case, view = device_case(seed + 400, dims)
    x = user_input(rng, case, special=False)
    size = random_output_size(rng, case.spatial)
    options = dict(channels_last=case.channels_last)
    mean = getattr(nb, f"adaptive_avg_pool{dims}d")(x, size, **options)
    assert_close(getattr(nb, f"adaptive_avg_pool{dims}d")(to_device(x, view), size, **options), mean)
    grad = random_values(rng, mean.shape, case.dtype, special=False)
    mean_backward = getattr(nb, f"adaptive_avg_pool{dims}d_backward")
    assert_close(mean_backward(to_device(grad, view), x.shape, **options), mean_backward(grad, x.shape, **options))

    with_nan = user_input(rng, case)
    maximum = getattr(nb, f"adaptive_max_pool{dims}d")
    values, indices = maximum(with_nan, size, True, **options)
    assert_same(maximum(to_device(with_nan, view), size, True, **options), (values, indices))
    max_backward = getattr(nb, f"adaptive_max_pool{dims}d_backward")
    expected = max_backward(grad, indices, x.shape, **options)
    assert_same(max_backward(to_device(grad), to_device(indices, view), x.shape, **options), expected)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", SEEDS[:4])
def test_max_unpool_matches_the_cpu(dims, seed):
    """Indices of a real max pooling when its shapes fit, else random ones (repeats: the last value wins)."""
    rng, case, view = device_case(seed + 500, dims, dilation=False, dtypes=(np.float32, np.int32))
    kernel, stride, padding = case.kernel, case.stride, case.padding
    default = tuple((n - 1) * s - 2 * p + k for n, k, s, p in zip(case.spatial, kernel, stride, padding))
    if min(default) < 1:
        padding = (0,) * dims
        default = tuple((n - 1) * s + k for n, k, s in zip(case.spatial, kernel, stride))
    x = user_input(rng, case)
    options = dict(kernel_size=kernel, stride=stride, padding=padding, channels_last=case.channels_last)
    indices = rng.integers(0, int(np.prod(default)), size=x.shape)
    source = random_values(rng, case.user_shape(default), case.dtype)
    try:
        pooled, pooled_indices = getattr(nb, f"max_pool{dims}d")(source, return_indices=True, **options)
        if pooled_indices.shape == x.shape:
            indices = pooled_indices
    except ValueError:  # these window parameters do not pool an input of the default size
        pass
    unpool = getattr(nb, f"max_unpool{dims}d")
    expected = unpool(x, indices, **options)
    assert_same(unpool(to_device(x, view), to_device(indices), **options), expected)


def test_every_public_op_is_exercised_here():
    """Each public function (and so each CUDA launcher) appears in one of the tests above."""
    source = open(__file__).read()
    for name in nb.__all__:
        if name[0].islower() and name != "functional":
            family = name.replace("_backward", "").replace("_inference", "")[:-2]  # max_pool2d -> max_pool
            assert f'"{family}{{dims}}d' in source or f"{family}{{dims}}d" in source, name


# --------------------------------------------------------------------------- properties of the backend


def test_backward_passes_are_deterministic():
    rng = np.random.default_rng(7)
    x = to_device(rng.standard_normal((2, 3, 6, 7, 5)).astype(np.float32))
    y, indices = nb.max_pool3d(x, 3, stride=1, padding=1, return_indices=True)  # overlapping windows
    grad = to_device(rng.standard_normal(y.shape).astype(np.float32))
    first = to_host(nb.max_pool3d_backward(grad, indices, x.shape))
    second = to_host(nb.max_pool3d_backward(grad, indices, x.shape))
    assert first.tobytes() == second.tobytes()
    pooled = to_device(rng.standard_normal((2, 3, 4, 3, 2)).astype(np.float32))
    first = to_host(nb.adaptive_avg_pool3d_backward(pooled, (2, 3, 7, 5, 3)))
    second = to_host(nb.adaptive_avg_pool3d_backward(pooled, (2, 3, 7, 5, 3)))
    assert first.tobytes() == second.tobytes()


def test_out_parameter_on_the_device():
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 6)).astype(np.float32)
    out = cuda.device_array((2, 3, 3, 3), np.float32)
    result = nb.max_pool2d(to_device(x), 2, out=out)
    assert result is out
    np.testing.assert_array_equal(out.copy_to_host(), nb.max_pool2d(x, 2))
    with pytest.raises(ValueError, match="out must have shape"):
        nb.avg_pool2d(to_device(x), 2, out=cuda.device_array((2, 3, 2, 2), np.float32))
    with pytest.raises(TypeError, match="out must have dtype"):
        nb.avg_pool2d(to_device(x), 2, out=cuda.device_array((2, 3, 3, 3), np.float64))


def test_mixing_host_and_device_arrays_names_each_argument():
    x = np.ones((1, 1, 4, 4), np.float32)
    with pytest.raises(TypeError, match=r"x is on the GPU .* out is on the host"):
        nb.max_pool2d(to_device(x), 2, out=np.empty((1, 1, 2, 2), np.float32))
    y, indices = nb.max_pool2d(x, 2, return_indices=True)
    with pytest.raises(TypeError, match=r"grad_output is on the host .* indices is on the GPU"):
        nb.max_pool2d_backward(y, to_device(indices), x.shape)


def test_bad_arguments_get_the_cpu_errors_on_the_device():
    x = to_device(np.ones((1, 1, 4, 4), np.float32))
    with pytest.raises(ValueError, match="padding must be at most half"):
        nb.avg_pool2d(x, 2, padding=2)
    with pytest.raises(TypeError, match="accepted dtypes are float32 or float64"):
        nb.avg_pool2d(to_device(np.ones((1, 1, 4, 4), np.int32)), 2)
    y, indices = nb.max_pool2d(np.ones((1, 1, 4, 4), np.float32), 2, return_indices=True)
    with pytest.raises(ValueError, match=r"got values from 0 to 16"):
        nb.max_pool2d_backward(to_device(y), to_device(indices * 0 + np.array([[[[0, 16], [1, 2]]]])), (1, 1, 4, 4))


def test_a_missing_numba_cuda_says_what_to_install(monkeypatch):
    real_find_spec = _dispatch.importlib.util.find_spec
    monkeypatch.setattr(
        _dispatch.importlib.util, "find_spec", lambda name, *a: None if name == "numba_cuda" else real_find_spec(name, *a)
    )
    with pytest.raises(ImportError, match=r'pip install "numba-pool\[cuda\]"'):
        nb.max_pool2d(to_device(np.ones((1, 1, 4, 4), np.float32)), 2)


def test_importing_numba_pool_does_not_import_numba_cuda():
    code = "import sys, numpy as np, numba_pool as nb; nb.max_pool2d(np.ones((1, 1, 4, 4)), 2); print('numba.cuda' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# --------------------------------------------------------------------------- other array families (simulator only)


class InterfaceArray:
    """A stand-in for a CuPy array or a torch CUDA tensor: only ``__cuda_array_interface__``.

    Under the simulator, device memory is host memory, so the interface can
    point at a NumPy array's buffer with any strides.
    """

    def __init__(self, host: np.ndarray, stream=None):
        self.host = host
        self.stream = stream

    @property
    def __cuda_array_interface__(self):
        return {
            "shape": self.host.shape,
            "strides": None if self.host.flags.c_contiguous else self.host.strides,
            "typestr": self.host.dtype.str,
            "data": (self.host.__array_interface__["data"][0], False),
            "version": 3,
            "stream": self.stream,
        }


class RequiresGradTensor:
    requires_grad = True

    @property
    def __cuda_array_interface__(self):
        raise RuntimeError("Can't get __cuda_array_interface__ on Variable that requires grad.")


needs_simulator = pytest.mark.skipif(not SIMULATOR, reason="interface stand-ins point at host memory: simulator only")


@needs_simulator
@pytest.mark.parametrize("view", ["reversed", "fortran", "channels_last_memory"])
def test_any_interface_array_with_any_strides(view):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    if view == "reversed":
        host = np.flip(np.flip(x).copy())
    elif view == "fortran":
        host = np.asfortranarray(x)
    else:
        host = np.moveaxis(np.ascontiguousarray(np.moveaxis(x, 1, -1)), -1, 1)
    y, indices = nb.max_pool2d(InterfaceArray(host), 2, return_indices=True)
    expected_y, expected_indices = nb.max_pool2d(x, 2, return_indices=True)
    np.testing.assert_array_equal(to_host(y), expected_y)
    np.testing.assert_array_equal(to_host(indices), expected_indices)
    np.testing.assert_allclose(to_host(nb.avg_pool2d(InterfaceArray(host), 3, 2, 1)), nb.avg_pool2d(x, 3, 2, 1), rtol=1e-6)


def test_tensors_that_require_grad_get_a_fix():
    with pytest.raises(TypeError, match=r"call x.detach\(\) first"):
        nb.max_pool2d(RequiresGradTensor(), 2)


def test_cpu_torch_tensors_stay_on_the_cpu():
    torch = pytest.importorskip("torch")
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert not _dispatch.is_device_array(x)
    np.testing.assert_array_equal(nb.max_pool2d(x, 2), [[[[5.0, 7.0], [13.0, 15.0]]]])


# --------------------------------------------------------------------------- the GPU check script


def test_gpu_check_runs_end_to_end_with_tiny_shapes(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bench.gpu_check", "--tiny", "--repeats", "2"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all ops agree with the CPU" in result.stdout


def _cuda_compilers_installed() -> bool:
    import importlib.util

    if importlib.util.find_spec("nvidia") is None:  # the namespace package of NVIDIA's wheels
        return False
    return all(importlib.util.find_spec(name) is not None for name in ("nvidia.cuda_nvcc", "nvidia.cuda_nvrtc"))


@pytest.mark.skipif(
    not _cuda_compilers_installed(),
    reason='compiling for a real GPU needs NVVM and NVRTC: pip install "numba-cuda[cu12]" (not in CI: ~400 MB)',
)
def test_kernels_compile_for_a_real_gpu_without_float64_in_float32_kernels():
    """The simulator runs kernels as Python; this compiles each to PTX for a real device."""
    environment = {key: value for key, value in os.environ.items() if key != "NUMBA_ENABLE_CUDASIM"}
    result = subprocess.run(
        [sys.executable, "-m", "bench.cuda_compile_check"], capture_output=True, text=True, timeout=600, env=environment
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all kernels compile" in result.stdout


@pytest.mark.parametrize(
    "make_layer",
    [
        lambda: nb.MaxPool2d(3, stride=2, padding=1),
        lambda: nb.AvgPool2d(2),
        lambda: nb.StochasticPool2d(2, seed=3),
        lambda: nb.GlobalAvgPool2d(),
        lambda: nb.AdaptiveMaxPool2d((2, 3)),
    ],
)
def test_layers_run_on_device_arrays(make_layer):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
    on_host, on_device = make_layer(), make_layer()
    y = on_host(x)
    assert_close(on_device(to_device(x)), y)
    grad = rng.standard_normal(y.shape).astype(np.float32)
    assert_close(on_device.backward(to_device(grad)), on_host.backward(grad))


@pytest.mark.parametrize("dtype", [np.float32, np.int16])
def test_global_max_over_planes_larger_than_a_block(dtype):
    """Planes of 300 elements: the block reduction's tree must keep the CPU's tie and NaN rules."""
    rng = np.random.default_rng(12)
    x = random_values(rng, (2, 3, 20, 15), dtype)
    x[0, 0] = 7  # all ties: the first element wins
    if dtype == np.float32:
        x[0, 1, 5:, :] = np.nan  # the last NaN wins
    expected = nb.global_max_pool2d(x, return_indices=True)
    assert_same(nb.global_max_pool2d(to_device(x), return_indices=True), expected)
    assert expected[1][0, 0] == 0
    assert dtype != np.float32 or expected[1][0, 1] == 299


def test_torch_family_allocation_and_export_arithmetic():
    """The torch family's buffers and strided results, checked with CPU tensors (the same torch calls a
    GPU run makes, but for the device): dtype mapping, element strides, and sharing the buffer."""
    torch = pytest.importorskip("torch")
    from numba_pool.backends.cuda import _arrays

    like = _arrays.DeviceView(torch.zeros(1), "torch", (1,), (4,), np.dtype(np.float32))
    for dtype in (np.float32, np.float64, np.int64, np.uint8):
        base = _arrays.empty((2, 4, 3, 5), dtype, like)
        assert base.owner.dtype == torch.from_numpy(np.zeros(0, dtype)).dtype
        assert base.strides == np.empty((2, 4, 3, 5), dtype).strides
        channels_last = base.transpose(0, 3, 1, 2)  # a (2, 5, 4, 3) view with channels-last memory
        exported = _arrays.export(channels_last)
        assert tuple(exported.shape) == (2, 5, 4, 3)
        assert tuple(s * np.dtype(dtype).itemsize for s in exported.stride()) == channels_last.strides
        exported[1, 2, 3, 0] = 7
        assert base.owner[((((1 * 4) + 3) * 3 + 0) * 5) + 2] == 7  # the same memory, at the C-order offset
