"""Gathers driven by index arrays: the backward of every pooling that picks one element
per window (max, stochastic, adaptive and global max) and max unpooling.

The indices alone do not say which windows can point at an input element, so a
first pass records, per output coordinate along each axis, the lowest and
highest input coordinate its indices name (integer atomics: the result does not
depend on their order). From those, each input position gets a contiguous range
of outputs that contains every output pointing at it. The gather then visits
that range in output order, so sums are deterministic and equal the CPU's.
For indices made by a pooling the ranges are the windows covering the element.
"""

from __future__ import annotations

import numpy as np
from numba import cuda, int64

from ..rules import flat_plane_index, plane_position
from ._launch import arrays, channels_fastest, launch, per_element, uploaded

_NONE_SEEN = np.iinfo(np.int64).max


@cuda.jit(device=True)
def _note_index(args, n, c, od, oh, ow):
    indices, depth, height, width, extremes, lows, highs, h_offset, w_offset = args
    index = indices[n, c, od, oh, ow]
    cuda.atomic.min(extremes, 0, index)
    cuda.atomic.max(extremes, 1, index)
    if 0 <= index < depth * height * width:
        # int64 once in range: keeps the arithmetic in int64 for uint64 indices
        d, h, w = plane_position(int64(index), height, width)
        cuda.atomic.min(lows, od, d)
        cuda.atomic.max(highs, od, d)
        cuda.atomic.min(lows, h_offset + oh, h)
        cuda.atomic.max(highs, h_offset + oh, h)
        cuda.atomic.min(lows, w_offset + ow, w)
        cuda.atomic.max(highs, w_offset + ow, w)


_note_indices = per_element(_note_index)


def _extremes_start(dtype) -> np.ndarray:
    """[running minimum, running maximum] of the indices, in a type that holds every index value:
    uint64 for unsigned indices (a uint64 index can exceed the int64 range), int64 for signed ones."""
    if dtype.kind == "u":
        return np.array([np.iinfo(np.uint64).max, 0], np.uint64)
    return np.array([_NONE_SEEN, -1], np.int64)


class IndexSummary:
    """What one pass over an index array found: its extremes, and per output axis the
    lowest and highest input coordinate named (for plane sizes ``plane``)."""

    def __init__(self, indices, plane):
        out_sizes = indices.shape[2:]
        offsets = np.cumsum((0,) + tuple(out_sizes))
        extremes = uploaded(_extremes_start(indices.dtype), stream=indices.stream)
        lows = uploaded(np.full(offsets[-1], _NONE_SEEN, np.int64), stream=indices.stream)
        highs = uploaded(np.full(offsets[-1], -1, np.int64), stream=indices.stream)
        args = (*arrays(indices), *plane, extremes, lows, highs, int(offsets[1]), int(offsets[2]))
        launch(_note_indices, indices.shape, channels_fastest(indices), args, indices.stream)
        self.low, self.high = (int(v) for v in extremes.copy_to_host(stream=indices.stream or 0))
        lows, highs = lows.copy_to_host(stream=indices.stream or 0), highs.copy_to_host(stream=indices.stream or 0)
        self.axis_bounds = [(lows[a:b], highs[a:b]) for a, b in zip(offsets[:-1], offsets[1:])]
        self.plane = tuple(plane)


def summary(indices, plane) -> IndexSummary:
    """The summary of a canonical index view, computed once per view memory and plane."""
    key = ("index summary", indices.shape, indices.strides, tuple(plane))
    if key not in indices.cache:
        indices.cache[key] = IndexSummary(indices, plane)
    return indices.cache[key]


def covering_outputs(lows: np.ndarray, highs: np.ndarray, length: int) -> np.ndarray:
    """(2, length): for each input position, a range [first, stop) of outputs holding all that name it.

    An output o names positions in [lows[o], highs[o]]. The running maximum of
    the highs and the running minimum (from the right) of the lows are sorted,
    which turns the ranges into two binary searches.
    """
    positions = np.arange(length)
    first = np.searchsorted(np.maximum.accumulate(highs), positions, side="left")
    stop = np.searchsorted(np.minimum.accumulate(lows[::-1])[::-1], positions, side="right")
    return np.stack([first, np.maximum(first, stop)]).astype(np.int64)


def _covers(indices, plane, stream):
    bounds = summary(indices, plane).axis_bounds
    return tuple(uploaded(covering_outputs(low, high, length), stream=stream) for (low, high), length in zip(bounds, plane))


@cuda.jit(device=True)
def _gather_named(args, n, c, d, h, w):
    """target[n, c, d, h, w] from the sources whose index names (d, h, w), visited in source order:
    their sum (routed gradients) or the last of them (unpooling); zero when none does."""
    sources, indices, target, d_cover, h_cover, w_cover, zero, summed = args
    flat = flat_plane_index(d, h, w, target.shape[3], target.shape[4])
    value = zero
    for od in range(d_cover[0, d], d_cover[1, d]):
        for oh in range(h_cover[0, h], h_cover[1, h]):
            for ow in range(w_cover[0, w], w_cover[1, w]):
                if indices[n, c, od, oh, ow] == flat:
                    value = value + sources[n, c, od, oh, ow] if summed else sources[n, c, od, oh, ow]
    target[n, c, d, h, w] = value


_gather_by_index = per_element(_gather_named)


def _gather(sources, indices, target, summed: bool) -> None:
    stream = sources.stream
    covers = _covers(indices, target.shape[2:], stream)
    args = (*arrays(sources, indices, target), *covers, sources.dtype.type(0), summed)
    launch(_gather_by_index, target.shape, channels_fastest(target), args, stream)


def routed_backward(grad_output, indices, grad_input):
    """Canonical views: each grad_input element sums, in output order, the gradients whose index names it."""
    _gather(grad_output, indices, grad_input, summed=True)


def max_unpool(x, indices, out):
    """Canonical views: each output element takes the last input (in input order) whose index names it, else 0."""
    _gather(x, indices, out, summed=False)


def index_range(indices, plane):
    """(lowest, highest) value of a canonical index view (for the range check before any gather)."""
    found = summary(indices, plane)
    return found.low, found.high


__all__ = ["index_range", "max_unpool", "routed_backward"]
