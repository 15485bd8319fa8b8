"""Adaptive pooling on CUDA: windows given per axis as bins (start, stop), one thread per output;
the average's backward gathers over the bins covering each input element."""

from numba import cuda

from .. import rules
from ._launch import arrays, channels_fastest, launch, no_indices, per_element, shared_with_cpu, uploaded

box_maximum = shared_with_cpu(rules.box_maximum)  # takes an array: under the simulator, its Python code


@cuda.jit(device=True)
def _bin_maximum(args, n, c, od, oh, ow):
    """The CPU's rule (``replaces_maximum``): first maximum on ties, the last NaN in bin order wins."""
    x, out, indices, d_bins, h_bins, w_bins, store_indices = args
    best, best_index = box_maximum(
        x[n, c], d_bins[0, od], d_bins[1, od], h_bins[0, oh], h_bins[1, oh], w_bins[0, ow], w_bins[1, ow]
    )
    out[n, c, od, oh, ow] = best
    if store_indices:
        indices[n, c, od, oh, ow] = best_index


_max_forward = per_element(_bin_maximum)


def _upload(stream, *host_arrays, dtype=None):
    return tuple(uploaded(array, dtype, stream) for array in host_arrays)


def adaptive_max_pool_forward(x, bins, out, indices):
    """Entry of ops.adaptive_pool.MaxKernels (canonical views; per axis a (2, output length) bins array)."""
    store_indices = indices is not None
    index_argument = arrays(indices)[0] if store_indices else no_indices()
    bins = _upload(x.stream, *bins)
    launch(_max_forward, out.shape, channels_fastest(x), (*arrays(x, out), index_argument, *bins, store_indices), x.stream)


def _bin_sizes(dtype, stream, *bins):
    """Per axis, each bin's size in the data's dtype (so the division stays in that dtype)."""
    return _upload(stream, *(b[1] - b[0] for b in bins), dtype=dtype)


@cuda.jit(device=True)
def _bin_mean(args, n, c, od, oh, ow):
    x, out, d_bins, h_bins, w_bins, d_sizes, h_sizes, w_sizes, zero = args
    total = zero
    for d in range(d_bins[0, od], d_bins[1, od]):
        for h in range(h_bins[0, oh], h_bins[1, oh]):
            for w in range(w_bins[0, ow], w_bins[1, ow]):
                total += x[n, c, d, h, w]
    out[n, c, od, oh, ow] = total / (d_sizes[od] * h_sizes[oh] * w_sizes[ow])


_avg_forward = per_element(_bin_mean)


def adaptive_avg_pool_forward(x, bins, out):
    """Entry of ops.adaptive_pool.AvgKernels: the mean of each bin."""
    sizes = _bin_sizes(x.dtype, x.stream, *bins)
    args = (*arrays(x, out), *_upload(x.stream, *bins), *sizes, x.dtype.type(0))
    launch(_avg_forward, out.shape, channels_fastest(x), args, x.stream)


@cuda.jit(device=True)
def _gather_bin_shares(args, n, c, d, h, w):
    grad_output, grad_input, d_cover, h_cover, w_cover, d_sizes, h_sizes, w_sizes, zero = args
    total = zero
    for od in range(d_cover[0, d], d_cover[1, d]):
        for oh in range(h_cover[0, h], h_cover[1, h]):
            for ow in range(w_cover[0, w], w_cover[1, w]):
                total += grad_output[n, c, od, oh, ow] / (d_sizes[od] * h_sizes[oh] * w_sizes[ow])
    grad_input[n, c, d, h, w] = total


_avg_backward = per_element(_gather_bin_shares)


def adaptive_avg_pool_backward(grad_output, bins, covers, grad_input):
    """Entry of ops.adaptive_pool.AvgKernels: each input element gathers the gradients of its bins."""
    stream = grad_output.stream
    sizes = _bin_sizes(grad_output.dtype, stream, *bins)
    args = (*arrays(grad_output, grad_input), *_upload(stream, *covers), *sizes, grad_output.dtype.type(0))
    launch(_avg_backward, grad_input.shape, channels_fastest(grad_input), args, stream)


__all__ = ["adaptive_avg_pool_backward", "adaptive_avg_pool_forward", "adaptive_max_pool_forward"]
