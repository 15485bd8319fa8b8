"""Backends: where the kernels run.

``cpu/`` holds the ``@njit(parallel=True)`` kernels, ``cuda/`` the ``@cuda.jit``
ones (imported on first use); ``contract.py`` says what each must provide;
``rules.py`` holds the scalar rules both compile; ``_dispatch.py`` picks the
backend from the type of a call's arrays.
"""

from ._dispatch import backend_for, cuda_backend, is_dask_array, is_device_array

__all__ = ["backend_for", "cuda_backend", "is_dask_array", "is_device_array"]
