"""Which backend runs a call, chosen from the type of its arrays.

Only the CPU backend exists so far; device arrays (anything exposing
``__cuda_array_interface__``) are refused with a clear message instead of
being copied to the host behind the user's back.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np


def backend_for(op: str, **arrays) -> ModuleType:
    """The kernel module for these arrays (keyword names appear in error messages)."""
    for name, array in arrays.items():
        if array is None or type(array) is np.ndarray:  # the common case, checked first because it is cheap
            continue
        if hasattr(type(array), "__cuda_array_interface__"):
            raise TypeError(
                f"{op}: {name} is a CUDA array; this version of numba_pool runs on the CPU only. "
                f"Copy it to the host first (e.g. {name}.copy_to_host() or {name}.cpu().numpy())"
            )
    from . import cpu

    return cpu
