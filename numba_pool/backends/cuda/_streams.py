"""The stream a launch goes on: the one the input's ``__cuda_array_interface__`` names.

Version 3 of the interface carries the stream the producer last used (or None
when there is nothing to wait for). Launching on that stream orders our
kernels after the producer's work and the consumer's later work after ours,
without a host synchronisation.
"""

from __future__ import annotations

import functools

from numba import cuda
from numba.cuda.core import config as _cuda_config

# The CUDA driver's reserved handles for the two default streams.
_LEGACY_DEFAULT = 1
_PER_THREAD_DEFAULT = 2


def from_interface(handle, array):
    """A numba stream for an interface's ``stream`` entry (None: the default stream)."""
    if _cuda_config.ENABLE_CUDASIM:
        return 0  # the simulator runs every launch synchronously
    if handle is None or handle == 0:
        own = getattr(array, "stream", 0)  # numba device arrays remember the stream they were made on
        return own if own else cuda.default_stream()
    if handle == _LEGACY_DEFAULT:
        return cuda.legacy_default_stream()
    if handle == _PER_THREAD_DEFAULT:
        return cuda.per_thread_default_stream()
    return _external(int(handle))


@functools.lru_cache(maxsize=64)
def _external(handle: int):
    return cuda.external_stream(handle)
