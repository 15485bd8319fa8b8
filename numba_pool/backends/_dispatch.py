"""Which backend runs a call, chosen from the type of its arrays.

NumPy arrays and array-likes run on the CPU (:mod:`numba_pool.backends.cpu`). CUDA
arrays (numba device arrays, the CUDA simulator's included, CuPy arrays,
PyTorch CUDA tensors: anything exposing ``__cuda_array_interface__``) run on
the GPU (:mod:`numba_pool.backends.cuda`, imported on first use, so CPU-only users never
import numba.cuda). One call never mixes the two.
"""

from __future__ import annotations

import importlib.util
from types import ModuleType

import numpy as np

from .._spec import DLPACK_CPU
from . import cpu

_CUDA_EXTRA = 'pip install "numba-pool[cuda]"'


def is_device_array(array) -> bool:
    """Whether ``array`` lives in GPU memory (checked on its type, so a failing property is never read)."""
    kind = type(array)
    if getattr(kind, "__cuda_ndarray__", False):  # numba device arrays, the simulator's included
        return True
    if not hasattr(kind, "__cuda_array_interface__"):
        return False
    on_gpu = getattr(array, "is_cuda", None)  # torch.Tensor has the property on CPU tensors too
    if on_gpu is not None:
        return bool(on_gpu)
    if hasattr(kind, "__dlpack_device__"):  # so do JAX arrays: ask where the memory is
        return array.__dlpack_device__()[0] != DLPACK_CPU
    return True


def is_dask_array(array) -> bool:
    """Whether ``array`` is a dask array (checked without importing dask)."""
    return type(array).__module__.startswith("dask.") and hasattr(array, "chunks") and hasattr(array, "dask")


def _where(array) -> str:
    return f"on the GPU ({type(array).__name__})" if is_device_array(array) else f"on the host ({type(array).__name__})"


def backend_for(op: str, **arrays) -> ModuleType:
    """The backend module for these arrays (keyword names appear in error messages)."""
    for array in arrays.values():  # the common case, NumPy arrays only, checked first because it is cheap
        if array is not None and type(array) is not np.ndarray:
            break
    else:
        return cpu
    given = {name: array for name, array in arrays.items() if array is not None}
    on_device = [is_device_array(array) for array in given.values()]
    if not any(on_device):
        return cpu
    if not all(on_device):
        places = ", ".join(f"{name} is {_where(array)}" for name, array in given.items())
        raise TypeError(
            f"{op}: all arrays of one call must be on the same side; {places}. "
            "Move them together, e.g. numba.cuda.to_device(a) / a.copy_to_host(), cupy.asarray(a) / a.get(), "
            "tensor.cuda() / tensor.cpu()"
        )
    return cuda_backend()


def cuda_backend() -> ModuleType:
    """:mod:`numba_pool.backends.cuda`, or an ImportError that says how to install it."""
    if importlib.util.find_spec("numba_cuda") is None:
        raise ImportError(f"numba_pool needs numba-cuda to run on CUDA arrays; install it with: {_CUDA_EXTRA}")
    from . import cuda

    return cuda
