"""Max pooling on CUDA: one thread per output element; backward is a gather (see ``_routing``)."""

from numba import cuda

from ..rules import flat_plane_index, replaces_maximum, valid_taps
from . import global_pool
from ._launch import arrays, channels_fastest, launch, no_indices, per_element


@cuda.jit(device=True)
def _window_maximum(args, n, c, od, oh, ow):
    """The CPU's rule exactly (``replaces_maximum``, PyTorch's): the first in-input element seeds the
    maximum, a larger value or any NaN replaces it (ties keep the earlier element, the last NaN wins)."""
    x, out, indices, kernel, stride, padding, dilation, store_indices = args
    depth, height, width = x.shape[2], x.shape[3], x.shape[4]
    d_start = od * stride[0] - padding[0]
    h_start = oh * stride[1] - padding[1]
    w_start = ow * stride[2] - padding[2]
    d_first, d_stop = valid_taps(d_start, kernel[0], dilation[0], depth)
    h_first, h_stop = valid_taps(h_start, kernel[1], dilation[1], height)
    w_first, w_stop = valid_taps(w_start, kernel[2], dilation[2], width)
    best = x[n, c, d_start + d_first * dilation[0], h_start + h_first * dilation[1], w_start + w_first * dilation[2]]
    best_index = -1
    for i in range(d_first, d_stop):
        d = d_start + i * dilation[0]
        for j in range(h_first, h_stop):
            h = h_start + j * dilation[1]
            for k in range(w_first, w_stop):
                w = w_start + k * dilation[2]
                value = x[n, c, d, h, w]
                if replaces_maximum(value, best, best_index >= 0):
                    best = value
                    best_index = flat_plane_index(d, h, w, height, width)
    out[n, c, od, oh, ow] = best
    if store_indices:
        indices[n, c, od, oh, ow] = best_index


_max_forward = per_element(_window_maximum)


# --------------------------------------------------------------------------- the backend contract


def max_pool_forward(x, window, out, indices):
    """Entry of ops.max_pool.Kernels: canonical views of any memory; ``window`` = (kernel, stride, padding, dilation)."""
    store_indices = indices is not None
    index_argument = arrays(indices)[0] if store_indices else no_indices()
    args = (*arrays(x, out), index_argument, *window, store_indices)
    launch(_max_forward, out.shape, channels_fastest(x), args, x.stream)


def global_max_pool_forward(x, out, indices):
    """Entry of ops.global_pool.MaxKernels: the maximum of each whole plane; ``out``, ``indices`` (N, C, 1, 1, 1)."""
    if channels_fastest(x):  # threads along the channels: the sliding-window kernel, one window per plane
        plane = tuple(x.shape[2:])
        max_pool_forward(x, (plane, plane, (0, 0, 0), (1, 1, 1)), out, indices)
        return
    store_indices = indices is not None  # a block of threads per plane, reducing in shared memory
    global_pool.plane_maxima(x, out, arrays(indices)[0] if store_indices else no_indices(), store_indices)


__all__ = ["global_max_pool_forward", "max_pool_forward"]
