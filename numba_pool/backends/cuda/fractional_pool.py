"""Fractional max pooling on CUDA: one thread per output, each plane's windows starting where the
host-planned ``starts`` say; the maximum is the CPU's scalar rule (``shared_with_cpu``), so both
backends pick the same elements."""

from numba import cuda

from ..cpu import fractional_pool as rules
from ._launch import arrays, channels_fastest, launch, no_indices, per_element, shared_with_cpu, uploaded

fractional_window_maximum = shared_with_cpu(rules.fractional_window_maximum)


@cuda.jit(device=True)
def _window_maximum(args, n, c, od, oh, ow):
    x, out, indices, d_starts, h_starts, w_starts, kernel, store_indices = args
    best, best_index = fractional_window_maximum(x[n, c], d_starts[n, c], h_starts[n, c], w_starts[n, c], kernel, od, oh, ow)
    out[n, c, od, oh, ow] = best
    if store_indices:
        indices[n, c, od, oh, ow] = best_index


_fractional_max_forward = per_element(_window_maximum)


def fractional_max_pool_forward(x, starts, kernel, out, indices):
    """Entry of ops.fractional_pool.Kernels: canonical views; ``starts`` per axis a host (N, C, out length) array."""
    store_indices = indices is not None
    index_argument = arrays(indices)[0] if store_indices else no_indices()
    device_starts = tuple(uploaded(s, stream=x.stream) for s in starts)
    args = (*arrays(x, out), index_argument, *device_starts, kernel, store_indices)
    launch(_fractional_max_forward, out.shape, channels_fastest(x), args, x.stream)


def fractional_samples_to_host(samples):
    """Entry of ops.fractional_pool.Kernels: a host copy of device samples (they plan the windows on the host)."""
    return arrays(samples)[0].copy_to_host(stream=samples.stream or 0)


__all__ = ["fractional_max_pool_forward", "fractional_samples_to_host"]
