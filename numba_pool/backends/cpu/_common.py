"""Small compiled helpers shared by the CPU kernels."""

import numba
import numpy as np
from numba import njit

from ..._spec import channels_innermost

# The scalar rules both backends compile; imported here for the CPU kernels that use them.
from ..rules import (  # noqa: F401
    beats_maximum,
    flat_plane_index,
    plane_position,
    replaces_maximum,
    replaces_seeded_maximum,
    valid_taps,
    window_extent,
)

# cache=True keeps compiled kernels on disk between processes; first calls stay fast.
KERNEL_OPTIONS = {"parallel": True, "cache": True, "nogil": True}

# The larger kernels are a ``prange`` over blocks of rows that calls one block function, compiled with these
# options: once per signature for both the parallel kernel and its serial twin (so the parfor passes see a
# call, not the inlined body, and the parallel compile takes seconds, not tens of seconds). Without Numba's
# runtime (``_nrt``) the array views a block takes row by row cost no reference counting, which the parallel
# kernel's loop body never paid but the serial twin did: atomic increments per row made the twins 2-5 times
# slower than the same kernel on one thread. A block function therefore allocates nothing. So far the max
# pooling forwards, both stochastic forwards and average pooling's channels-last forward and both backwards
# are built so; the other kernels (the channels-first average forward allocates in its loop) keep their
# body in the prange, and their twins the reference counting.
BLOCK_OPTIONS = {"cache": True, "_nrt": False}

_BLOCKS_PER_CALL = 8 * numba.config.NUMBA_NUM_THREADS  # fixed for the process: Numba reads it once at import


# Stands in for the indices array when a kernel is asked not to store indices.
NO_INDICES = np.zeros((1, 1, 1, 1, 1), np.int64)

_TO_CHANNELS_LAST = (0, 2, 3, 4, 1)


def in_kernel_layout(follow, *canonical):
    """(channels_last, views): the (N, C, D, H, W) views of the contract as the CPU kernels take them.

    When ``follow`` keeps its channels innermost in memory, the channels-last
    kernels run, on (N, D, H, W, C) transposes that vectorise over the
    channels; otherwise the channels-first kernels, on the views as given.
    None stays None.
    """
    last = channels_innermost(follow)
    if not last:
        return False, canonical
    return True, tuple(None if view is None else view.transpose(_TO_CHANNELS_LAST) for view in canonical)


def row_blocks(rows: int) -> int:
    """How many blocks of rows a kernel with per-block scratch buffers splits its work into.

    A few blocks per thread (of the most Numba may use) balance the load; the
    result never depends on it.
    """
    return max(1, min(rows, _BLOCKS_PER_CALL))


@njit(inline="always", cache=True)
def unravel_row(row, channels, outer, inner):
    """Split a flat row number over (N, C, outer, inner) into its four indices."""
    i = row % inner
    row //= inner
    o = row % outer
    row //= outer
    return row // channels, row % channels, o, i


@njit(inline="always", cache=True)
def next_row(n, c, o, i, channels, outer, inner):
    """The (n, c, outer, inner) indices of the row after this one: ``unravel_row(row + 1)`` without divisions."""
    i += 1
    if i == inner:
        i = 0
        o += 1
        if o == outer:
            o = 0
            c += 1
            if c == channels:
                c = 0
                n += 1
    return n, c, o, i


@njit(inline="always", cache=True)
def interior_windows(out_length, length, kernel, stride, padding, dilation):
    """The windows [first, stop) along an axis that lie wholly inside the input (no padding)."""
    first = min(out_length, (padding + stride - 1) // stride)
    stop = min(out_length, (length - 1 - (kernel - 1) * dilation + padding) // stride + 1)
    return first, max(first, stop)


@njit(inline="always", cache=True)
def copy_row(source, target):
    """``target[:] = source`` for 1-D arrays of the same length (not checked), as a loop: a block function
    (``BLOCK_OPTIONS``) has no runtime for Numba's slice assignment, which may allocate a temporary."""
    for i in range(source.shape[0]):
        target[i] = source[i]
