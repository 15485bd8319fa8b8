"""Small compiled helpers shared by the CPU kernels."""

import numba
from numba import njit

# cache=True keeps compiled kernels on disk between processes; first calls stay fast.
KERNEL_OPTIONS = {"parallel": True, "cache": True, "nogil": True}

_BLOCKS_PER_CALL = 8 * numba.config.NUMBA_NUM_THREADS  # fixed for the process: Numba reads it once at import


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
def flat_plane_index(d, h, w, height, width):
    """Index of (d, h, w) in a C-ordered (D, H, W) plane."""
    return (d * height + h) * width + w


@njit(inline="always", cache=True)
def window_extent(start, kernel, length, padding):
    """Clip a window to the input: (first, stop, size counted with padding).

    The padded size follows PyTorch: the window is first clipped to the
    padded input (relevant with ceil_mode), then to the input itself.
    """
    stop = min(start + kernel, length + padding)
    padded_size = stop - start
    return max(start, 0), min(stop, length), padded_size


@njit(inline="always", cache=True)
def replaces_maximum(value, best, have_best):
    """Whether ``value``, met after ``best`` in window order, becomes the running maximum.

    PyTorch's rule (``val > maxval || isnan(val)``): the first element seeds the
    maximum, a larger value replaces it (ties keep the earlier element), and any
    NaN replaces it, so the last NaN in window order wins.
    """
    return not have_best or value > best or value != value


@njit(inline="always", cache=True)
def beats_maximum(candidate, candidate_flat, best, best_flat):
    """``replaces_maximum`` for candidates met in any order, each with its flat plane index.

    Window order is increasing flat index, so: NaN beats any number, between two
    NaNs the larger index wins, between equal numbers the smaller index wins.
    A total order, so trees and tiles may combine partial maxima in any order.
    Bitwise operators keep it branch-free for vectorised loops.
    """
    candidate_nan = candidate != candidate
    best_nan = best != best
    return (
        (candidate > best)
        | (candidate_nan & (best == best))
        | ((candidate == best) & (candidate_flat < best_flat))
        | (candidate_nan & best_nan & (candidate_flat > best_flat))
    )


@njit(inline="always", cache=True)
def valid_taps(start, kernel, dilation, length):
    """The taps i in [first, stop) of a window whose positions start + i * dilation lie in [0, length)."""
    if dilation == 1:  # the common case, without integer divisions
        return max(0, -start), min(kernel, length - start)
    first = 0 if start >= 0 else (dilation - 1 - start) // dilation
    stop = min(kernel, (length - start + dilation - 1) // dilation)
    return first, stop


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
