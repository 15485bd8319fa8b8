"""The CUDA backend itself: array families, out, errors, layers, determinism, the GPU check scripts.

Each op's CUDA results are compared with the CPU's in that op's test file (the tests that take the
``backend`` fixture); this file holds what is about the backend rather than one op. Runs on numba's
CUDA simulator when the machine has no GPU (see conftest.py) and on the real device otherwise.
"""

from __future__ import annotations

import ast
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("numba_cuda", reason="the CUDA tests need numba-cuda (pip install -e '.[test]' installs it)")

from numba import cuda  # noqa: E402  (after the skip: numba.cuda needs numba-cuda)

import numba_pool as nb  # noqa: E402
from numba_pool.backends import _dispatch  # noqa: E402
from helpers import assert_same_results  # noqa: E402

from numba.cuda.core import config as _cuda_config  # noqa: E402

SIMULATOR = bool(_cuda_config.ENABLE_CUDASIM)
TESTS = pathlib.Path(__file__).parent

# The tests taking ``backend`` run on the CUDA backend only. The simulator runs kernels as Python on
# NumPy scalars, which warn where a GPU silently gives inf or NaN; the results are compared all the same.
pytestmark = [pytest.mark.backends("cuda"), pytest.mark.filterwarnings("ignore::RuntimeWarning")]


# --------------------------------------------------------------------------- every op is compared on the device


def cuda_tested_calls() -> str:
    """The source of every test, in any test file, that takes ``backend`` and runs on CUDA."""
    sources = []
    for path in sorted(TESTS.glob("test_*.py")):
        source = path.read_text()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef) and "backend" in [argument.arg for argument in node.args.args]:
                markers = [ast.get_source_segment(source, decorator) for decorator in node.decorator_list]
                restricted = [m for m in markers if m.startswith("pytest.mark.backends(")]
                if path.name == "test_cuda.py" or not restricted or all('"cuda"' in m for m in restricted):
                    sources.append(ast.get_source_segment(source, node))
    return "\n".join(sources)


def test_every_public_op_is_compared_on_the_device():
    """Each public function (and so each CUDA launcher) is called by a test that runs on the CUDA backend."""
    calls = cuda_tested_calls()
    for name in nb.functional.__all__:
        family, direction = re.fullmatch(r"(\w+?)[123]d(?:_(\w+))?", name).groups()
        direction_pattern = f', "{direction}"' if direction else ""
        assert re.search(rf'op\("{family}", \w+{direction_pattern}\)', calls), name


# --------------------------------------------------------------------------- properties of the backend


def test_backward_passes_are_deterministic(backend):
    rng = np.random.default_rng(7)
    volume = (1, 2, 5, 6, 4) if SIMULATOR else (2, 3, 6, 7, 5)  # the simulator runs threads one at a time anyway
    x = backend.put(rng.standard_normal(volume).astype(np.float32))
    y, indices = nb.max_pool3d(x, 3, stride=1, padding=1, return_indices=True)  # overlapping windows
    grad = backend.put(rng.standard_normal(y.shape).astype(np.float32))
    first = backend.get(nb.max_pool3d_backward(grad, indices, x.shape))
    second = backend.get(nb.max_pool3d_backward(grad, indices, x.shape))
    assert first.tobytes() == second.tobytes()
    pooled = backend.put(rng.standard_normal((1, 2, 4, 3, 2)).astype(np.float32))
    first = backend.get(nb.adaptive_avg_pool3d_backward(pooled, (1, 2, 7, 5, 3)))
    second = backend.get(nb.adaptive_avg_pool3d_backward(pooled, (1, 2, 7, 5, 3)))
    assert first.tobytes() == second.tobytes()


def test_out_parameter_on_the_device(backend):
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 6)).astype(np.float32)
    out = cuda.device_array((2, 3, 3, 3), np.float32)
    result = nb.max_pool2d(backend.put(x), 2, out=out)
    assert result is out
    np.testing.assert_array_equal(out.copy_to_host(), nb.max_pool2d(x, 2))
    with pytest.raises(ValueError, match="out must have shape"):
        nb.avg_pool2d(backend.put(x), 2, out=cuda.device_array((2, 3, 2, 2), np.float32))
    with pytest.raises(TypeError, match="out must have dtype"):
        nb.avg_pool2d(backend.put(x), 2, out=cuda.device_array((2, 3, 3, 3), np.float64))


def test_mixing_host_and_device_arrays_names_each_argument(backend):
    x = np.ones((1, 1, 4, 4), np.float32)
    with pytest.raises(TypeError, match=r"x is on the GPU .* out is on the host"):
        nb.max_pool2d(backend.put(x), 2, out=np.empty((1, 1, 2, 2), np.float32))
    y, indices = nb.max_pool2d(x, 2, return_indices=True)
    with pytest.raises(TypeError, match=r"grad_output is on the host .* indices is on the GPU"):
        nb.max_pool2d_backward(y, backend.put(indices), x.shape)


def test_bad_arguments_get_the_cpu_errors_on_the_device(backend):
    x = backend.put(np.ones((1, 1, 4, 4), np.float32))
    with pytest.raises(ValueError, match="padding must be at most half"):
        nb.avg_pool2d(x, 2, padding=2)
    with pytest.raises(TypeError, match="accepted dtypes are float16, float32 or float64"):
        nb.avg_pool2d(backend.put(np.ones((1, 1, 4, 4), np.int32)), 2)
    y, indices = nb.max_pool2d(np.ones((1, 1, 4, 4), np.float32), 2, return_indices=True)
    with pytest.raises(ValueError, match=r"got values from 0 to 16"):
        nb.max_pool2d_backward(backend.put(y), backend.put(indices * 0 + np.array([[[[0, 16], [1, 2]]]])), (1, 1, 4, 4))


def test_a_missing_numba_cuda_says_what_to_install(backend, monkeypatch):
    real_find_spec = _dispatch.importlib.util.find_spec
    monkeypatch.setattr(
        _dispatch.importlib.util, "find_spec", lambda name, *a: None if name == "numba_cuda" else real_find_spec(name, *a)
    )
    with pytest.raises(ImportError, match=r'pip install "numba-pool\[cuda\]"'):
        nb.max_pool2d(backend.put(np.ones((1, 1, 4, 4), np.float32)), 2)


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
def test_any_interface_array_with_any_strides(backend, view):
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
    np.testing.assert_array_equal(backend.get(y), expected_y)
    np.testing.assert_array_equal(backend.get(indices), expected_indices)
    np.testing.assert_allclose(backend.get(nb.avg_pool2d(InterfaceArray(host), 3, 2, 1)), nb.avg_pool2d(x, 3, 2, 1), rtol=1e-6)


def test_tensors_that_require_grad_get_a_fix():
    with pytest.raises(TypeError, match=r"call x.detach\(\) first"):
        nb.max_pool2d(RequiresGradTensor(), 2)


def test_cpu_torch_tensors_stay_on_the_cpu():
    torch = pytest.importorskip("torch")
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert not _dispatch.is_device_array(x)
    np.testing.assert_array_equal(nb.max_pool2d(x, 2), [[[[5.0, 7.0], [13.0, 15.0]]]])


# --------------------------------------------------------------------------- the GPU check script


def test_gpu_check_runs_end_to_end_with_tiny_shapes(capsys, monkeypatch):
    """The script's whole run, in-process, on one op: every op's device checks also run in its own
    test file, through the backend fixture."""
    from bench import gpu_check

    monkeypatch.setattr(sys, "setswitchinterval", lambda interval: None)  # its setting for the simulator would outlive the test
    status = gpu_check.main(["--tiny", "--repeats", "1", "--ops", "max_pool"])
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert "all ops agree with the CPU" in printed
    assert "max fwd k3s2 same" in printed and "max bwd k3s2 same" in printed
    assert "avg fwd k2s2" not in printed  # checks of the chosen ops only (the timings always take max and avg)


def test_gpu_check_refuses_a_repeat_count_below_one(capsys):
    from bench import gpu_check

    with pytest.raises(SystemExit) as exit_status:  # argparse's error, before any device work
        gpu_check.main(["--tiny", "--repeats", "0"])
    assert exit_status.value.code == 2 and "expected a positive integer, got 0" in capsys.readouterr().err


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
def test_layers_run_on_device_arrays(backend, make_layer):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
    on_host, on_device = make_layer(), make_layer()
    y = on_host(x)
    assert_same_results(backend.get(on_device(backend.put(x))), y, exact=False)
    grad = rng.standard_normal(y.shape).astype(np.float32)
    assert_same_results(backend.get(on_device.backward(backend.put(grad))), on_host.backward(grad), exact=False)


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
