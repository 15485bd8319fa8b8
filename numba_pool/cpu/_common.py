"""Small compiled helpers shared by the CPU kernels."""

from numba import njit

# cache=True keeps compiled kernels on disk between processes; first calls stay fast.
KERNEL_OPTIONS = {"parallel": True, "cache": True, "nogil": True}


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
