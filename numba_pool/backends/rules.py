"""Scalar rules of pooling, written once and compiled into both the CPU and the CUDA kernels.

Each is an ``@njit(inline="always")`` function, which numba-cuda inlines into
``@cuda.jit`` kernels as well, so the two backends cannot drift apart: the
NaN-aware maximum, a window's extent and its valid taps, the flat index of a
plane position. A vectorised CPU form that restates one of them names it in a
comment and is tested against it.
"""

from numba import njit


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
