"""Dask arrays: every public op takes one and returns a lazy dask array (``pip install "numba-pool[dask]"``).

>>> import dask.array as da, numpy as np, numba_pool as nb
>>> x = da.from_array(np.arange(64, dtype=np.float32).reshape(1, 1, 8, 8), chunks=(1, 1, 3, 5))
>>> y = nb.max_pool2d(x, 3, stride=2, padding=1)          # lazy; windows see across chunk edges
>>> bool((y.compute() == nb.max_pool2d(x.compute(), 3, stride=2, padding=1)).all())
True
>>> [level.shape for level in pyramid(x, levels=2)]
[(1, 1, 8, 8), (1, 1, 4, 4), (1, 1, 2, 2)]

About 430 lines: the two ways of splitting (windows, planes), the block
geometry and the graph building are one algorithm; the per-op parts are
hooks in the op modules (``OpSpec.windows``).

How blocks are formed, so that every result equals the NumPy result exactly:

* Sliding-window forward passes (ops whose spec says ``dask="windows"``: max,
  average and stochastic pooling) keep the input's chunks along every axis.
  Each output block is computed from the input region its windows read
  (neighbouring chunks included), with the window geometry, divisors and
  random-number positions of the whole array (the op's ``WindowBlocks`` hooks):
  argmax indices are flat positions in the whole plane, and stochastic
  pooling picks the elements the unchunked call picks.
* Every other op (``dask="planes"``: global and adaptive pooling, unpooling;
  and every backward pass) keeps the chunks along batch and channels and runs
  on whole planes: the spatial axes are rechunked to one chunk first (a
  backward pass's indices can point anywhere in a plane, and an exact global
  sum needs the whole plane).
  A forward whose planes take their part of the call from the whole input
  (fractional pooling's samples and seed: the ``OpSpec.planes`` hooks) is
  told where its block's planes lie, so chunking changes none of its windows.

Each op adds one graph layer with one task per output block (a task names the input chunks its
windows read), so building the graph takes time linear in the number of blocks and reads no data.

The kernels run inside dask's workers. With Numba's ``workqueue`` threading
layer, which is not thread-safe, kernel calls from several worker threads are
serialised; the ``omp`` and ``tbb`` layers run them concurrently.
"""

from __future__ import annotations

import inspect
import itertools
import math
import operator
from dataclasses import replace
from functools import partial
from typing import Callable, NamedTuple

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph, MaterializedLayer

from . import _spec, functional
from .ops.spec import Direction, OpSpec, PlaneBlocks, WindowBlocks

__all__ = ["call", "pyramid"]

_ARRAY_PARAMETERS = ("x", "grad_output", "indices")


def call(spec: OpSpec, direction: Direction, dims: int, args: tuple, kwargs: dict):
    """Run the public function of ``spec``, ``direction`` and ``dims`` lazily on dask arrays."""
    name = spec.public_name(dims, direction)
    function = partial(direction.implementation, dims)
    options = inspect.signature(function).bind(*args, **kwargs)
    options.apply_defaults()
    options = dict(options.arguments)
    if options.get("out") is not None:
        raise TypeError(f"{name}: out= is not supported with dask arrays (the result is lazy); leave it None")
    options.pop("out", None)
    for parameter in _ARRAY_PARAMETERS:
        if parameter in options and not isinstance(options[parameter], da.Array):
            options[parameter] = da.asarray(options[parameter])
        if parameter in options:
            _check_known_chunks(options[parameter], parameter, name)
    lead_name = "x" if "x" in options else "grad_output"
    lead = options[lead_name]
    channels_last = _spec.check_flag(options.get("channels_last", False), "channels_last", name)
    _spec.layout_of(tuple(lead.shape), dims, channels_last, lead_name, name)  # the NumPy call's rank and size errors
    batched = lead.ndim == dims + 2
    if not batched:
        _add_batch_axis(options, dims)
    channel_axis = -1 if channels_last else 1
    if spec.dask == "windows" and direction is spec.forward:
        result = _window_forward(name, spec.windows, dims, function, options, channel_axis)
    else:
        planes = spec.planes if direction is spec.forward else None
        result = _on_whole_planes(name, function, options, channel_axis, planes)
    if batched:
        return result
    return tuple(r[0] for r in result) if isinstance(result, tuple) else result[0]


def _check_known_chunks(array, parameter: str, name: str) -> None:
    """Blocks are planned from chunk sizes, so they must be known (boolean indexing leaves them NaN)."""
    if any(math.isnan(length) for length in array.shape):
        raise ValueError(
            f"{name}: {parameter} has unknown chunk sizes (shape {array.shape}, as after boolean indexing); "
            f"call {parameter}.compute_chunk_sizes() first, or pass an array whose chunks are known"
        )


def _add_batch_axis(options: dict, dims: int) -> None:
    """Unbatched calls run as a batch of one (the caller takes the batch axis off again)."""
    for parameter in _ARRAY_PARAMETERS:
        if parameter in options:
            options[parameter] = options[parameter][np.newaxis]
    if isinstance(options.get("input_shape"), (tuple, list)):
        options["input_shape"] = (1, *options["input_shape"])
    size = options.get("output_size")
    if isinstance(size, (tuple, list)) and len(size) == dims + 1:  # max_unpool's whole-shape form
        options["output_size"] = (1, *size)


# --------------------------------------------------------------------------- building the graph
#
# Each op adds one graph layer with one task per output block (plus one small layer per output when a
# call returns several arrays). A task names the input chunks it reads by their keys, so building the
# graph is a loop over the output blocks with a few tuple operations each: no dask collection is
# sliced, wrapped in delayed() or concatenated per block (each of those walks the whole graph built so
# far, which made building quadratic in the number of chunks).


def _lazy_outputs(op: str, token: str, tasks: dict, dependencies: list, outputs: list) -> tuple:
    """Dask arrays for the outputs of ``tasks`` (one task per grid position, computing every output).

    ``outputs`` holds one ``(chunks, dtype, block_index)`` per output, ``block_index`` mapping a grid
    position to that output's block index.
    """
    blocks_name = f"{op}-{token}"
    if len(outputs) == 1:
        chunks, dtype, block_index = outputs[0]
        layer = {(blocks_name, *block_index(position)): task for position, task in tasks.items()}
        graph = HighLevelGraph.from_collections(blocks_name, layer, dependencies=dependencies)
        return (da.Array(graph, blocks_name, chunks, meta=np.empty((0,) * len(chunks), dtype)),)
    blocks_graph = HighLevelGraph.from_collections(
        blocks_name, {(blocks_name, *position): task for position, task in tasks.items()}, dependencies=dependencies
    )
    results = []
    for i, (chunks, dtype, block_index) in enumerate(outputs):
        name = f"{op}-output{i}-{token}"
        layer = {(name, *block_index(position)): (operator.getitem, (blocks_name, *position), i) for position in tasks}
        graph = HighLevelGraph(
            {**blocks_graph.layers, name: MaterializedLayer(layer)},
            {**blocks_graph.dependencies, name: {blocks_name}},
        )
        results.append(da.Array(graph, name, chunks, meta=np.empty((0,) * len(chunks), dtype)))
    return tuple(results)


def _token(op: str, options: dict, arrays: dict, shared=None) -> str:
    """A deterministic name: the same call on the same arrays gives the same graph keys.

    ``shared`` is what a windowed op's blocks share (a drawn seed makes each call's keys its own).
    """
    constants = {k: v for k, v in options.items() if k not in arrays}
    return tokenize(op, sorted(constants.items()), sorted((p, a.name) for p, a in arrays.items()), shared)


def _chunk_starts(chunks) -> np.ndarray:
    return np.cumsum((0, *chunks))


def _chunks_reading(starts: np.ndarray, low: int, high: int) -> tuple[range, slice]:
    """The chunks that hold input [low, high) along one axis, and the range's slice of their concatenation."""
    first = int(np.searchsorted(starts[1:], low, side="right"))  # the first chunk that ends after low
    stop = max(first + 1, int(np.searchsorted(starts[:-1], high, side="left")))  # chunks that start before high
    offset = int(starts[first])
    return range(first, stop), slice(low - offset, high - offset)


def _join_chunks(chunks: list, grid_shape: tuple[int, ...]):
    """The chunks (listed in C order over a grid of ``grid_shape`` blocks) joined into one array;
    no copy when there is only one."""
    if len(chunks) == 1:
        return chunks[0]
    grid = np.empty(len(chunks), dtype=object)
    for i, chunk in enumerate(chunks):
        grid[i] = chunk
    return np.block(grid.reshape(grid_shape).tolist())


# --------------------------------------------------------------------------- ops on whole planes


def _on_whole_planes(name: str, function: Callable, options: dict, channel_axis: int, planes: PlaneBlocks | None = None):
    """Blockwise over batch and channel chunks, with the spatial axes in one chunk; with ``planes``, each
    block runs the op's ``planes.block`` told where its planes lie in the whole input."""
    arrays = {p: options[p] for p in _ARRAY_PARAMETERS if p in options}
    lead = arrays.get("x", arrays.get("grad_output"))
    batch_chunks, channel_chunks = lead.chunks[0], lead.chunks[channel_axis]
    arrays = {p: _whole_planes(a, batch_chunks, channel_chunks, channel_axis) for p, a in arrays.items()}
    checking = {} if planes is None else planes.checking_options(options)
    templates = _output_templates(function, dict(options, **checking), arrays)
    shared = None if planes is None else planes.prepare(options, name)
    constants = {p: v for p, v in options.items() if p not in arrays}
    reshaped = isinstance(options.get("input_shape"), (tuple, list))
    key_of = [partial(_plane_key, a.name, a.ndim, channel_axis) for a in arrays.values()]
    tasks = {}
    for b, (b0, b1) in enumerate(_bounds(batch_chunks)):
        for c, (c0, c1) in enumerate(_bounds(channel_chunks)):
            block_constants = constants
            if reshaped:
                block_constants = dict(constants, input_shape=_resized(options["input_shape"], channel_axis, b1 - b0, c1 - c0))
            if planes is None:
                task = partial(_call_on_planes, function, block_constants, tuple(arrays))
            else:
                task = partial(_call_on_planes_at, planes.block, shared, (b0, c0))
            tasks[b, c] = (task, *(key((b, c)) for key in key_of))
    outputs = []
    for template in templates:
        axis = _output_channel_axis(template, channel_axis)
        chunks = tuple(
            batch_chunks if i == 0 else channel_chunks if i == axis else (length,) for i, length in enumerate(template.shape)
        )
        outputs.append((chunks, template.dtype, partial(_plane_index, template.ndim, axis)))
    results = _lazy_outputs(name, _token(name, options, arrays, shared), tasks, list(arrays.values()), outputs)
    return results if len(results) > 1 else results[0]


def _plane_index(ndim: int, channel_axis: int, position: tuple[int, int]) -> tuple[int, ...]:
    """The block index of (batch block, channel block) ``position`` in an array whose planes are whole."""
    index = [0] * ndim
    index[0], index[channel_axis % ndim] = position
    return tuple(index)


def _plane_key(name: str, ndim: int, channel_axis: int, position: tuple[int, int]) -> tuple:
    return (name, *_plane_index(ndim, channel_axis, position))


def _call_on_planes(function: Callable, constants: dict, parameters: tuple, *blocks):
    """One block of a whole-plane op, run in a dask worker; the CPU kernels serialise themselves where
    Numba's threading layer needs it (numba_pool.backends.cpu._threading), so no lock here."""
    return function(**constants, **dict(zip(parameters, blocks)))


def _call_on_planes_at(block: Callable, shared, origin: tuple[int, int], x):
    """One block of a ``PlaneBlocks`` op: its planes, the first at ``origin`` = (n, c) in the whole input."""
    return block(x, origin, shared)


def _whole_planes(array, batch_chunks, channel_chunks, channel_axis):
    spatial = {axis: -1 for axis in range(array.ndim) if axis not in (0, array.ndim + channel_axis if channel_axis < 0 else channel_axis)}
    return array.rechunk({0: batch_chunks, channel_axis % array.ndim: channel_chunks, **spatial})


def _output_templates(function: Callable, options: dict, arrays: dict) -> list[np.ndarray]:
    """The outputs of a zero-batch call: their dtypes, and their shapes but for the batch size.

    Also checks every argument, with the messages of the NumPy call, before any block runs.
    """
    empty = dict(options)
    for parameter, array in arrays.items():
        empty[parameter] = np.empty((0, *array.shape[1:]), array.dtype)
    if isinstance(options.get("input_shape"), (tuple, list)):
        empty["input_shape"] = (0, *options["input_shape"][1:])
    outputs = function(**empty)
    return list(outputs) if isinstance(outputs, tuple) else [outputs]


def _output_channel_axis(template: np.ndarray, channel_axis: int) -> int:
    """Where an output keeps the channels: as its input does, or axis 1 of a global pooling's (N, C)."""
    return 1 if template.ndim == 2 else channel_axis % template.ndim


# --------------------------------------------------------------------------- sliding-window forward passes


def _window_forward(name: str, windows: WindowBlocks, dims: int, function: Callable, options: dict, channel_axis: int):
    x = options["x"]
    template_options = dict(options, x=np.empty((0, *x.shape[1:]), x.dtype), **dict(windows.checking_options))
    templates = function(**template_options)  # checks every argument as the NumPy call would
    templates = list(templates) if isinstance(templates, tuple) else [templates]
    plan = _spec.plan_window(
        name, dims, x.shape, options["kernel_size"], options["stride"], options["padding"], options.get("dilation", 1),
        options["ceil_mode"], options["channels_last"],
    )
    shared = windows.prepare(options, plan, name)  # what every block of this call shares
    spatial_axes = [a % x.ndim for a in range(2, 2 + dims)] if channel_axis == 1 else list(range(1, 1 + dims))
    axes = [0, channel_axis % x.ndim, *spatial_axes]  # grid position i -> array axis
    per_axis = [_axis_blocks(x.chunks[axis], plan, i) for i, axis in enumerate(spatial_axes)]
    whole = _WholeGeometry(plan)
    tasks = {}
    for b, (b0, b1) in enumerate(_bounds(x.chunks[0])):
        for c, (c0, c1) in enumerate(_bounds(x.chunks[channel_axis])):
            for position in itertools.product(*(range(len(blocks)) for blocks in per_axis)):
                blocks = [per_axis[i][j] for i, j in enumerate(position)]
                window = _Window(whole, (b0, c0), blocks, (b1 - b0, c1 - c0))
                chunk_ranges, local_index = [None] * x.ndim, [slice(None)] * x.ndim
                chunk_ranges[0], chunk_ranges[axes[1]] = range(b, b + 1), range(c, c + 1)
                for axis, block in zip(spatial_axes, blocks):
                    chunk_ranges[axis], local_index[axis] = block.chunks, block.part
                grid_shape = tuple(len(r) for r in chunk_ranges)
                task = partial(_window_task, windows.block, window, shared, grid_shape, tuple(local_index))
                tasks[(b, c, *position)] = (task, [(x.name, *index) for index in itertools.product(*chunk_ranges)])
    chunks = [None] * x.ndim
    chunks[0], chunks[axes[1]] = x.chunks[0], x.chunks[axes[1]]
    for axis, blocks in zip(spatial_axes, per_axis):
        chunks[axis] = tuple(stop - first for block in blocks for first, stop in [block.outputs])

    def block_index(position):
        index = [0] * x.ndim
        for axis, i in zip(axes, position):
            index[axis] = i
        return tuple(index)

    outputs = [(tuple(chunks), template.dtype, block_index) for template in templates]
    results = _lazy_outputs(name, _token(name, options, {"x": x}, shared), tasks, [x], outputs)
    return results if len(results) > 1 else results[0]


class _AxisBlock(NamedTuple):
    """One output block along one spatial axis."""

    outputs: tuple[int, int]  # the output range [first, stop)
    inputs: tuple[int, int]  # the input range [low, high) its windows read
    padding: int  # the padding before ``low`` (only the whole input's left edge pads a block)
    padding_end: int  # how far its last window reaches past ``high`` (only at the whole input's right edge)
    chunks: range  # the input chunks holding [low, high)
    part: slice  # [low, high) within those chunks joined


def _axis_blocks(input_chunks, plan, axis: int) -> list[_AxisBlock]:
    """The output blocks along a spatial axis, following the input's chunk edges, and what each reads."""
    starts = _chunk_starts(input_chunks)
    k, s, p, d = plan.kernel_size[axis], plan.stride[axis], plan.padding[axis], plan.dilation[axis]
    blocks = []
    for first, stop in _output_blocks(input_chunks, plan, axis):
        start = first * s - p  # where the block's first window starts in the whole input
        end = (stop - 1) * s - p + d * (k - 1) + 1  # where its last window ends (past the input under padding)
        low, high = max(0, start), min(plan.input_spatial[axis], end)
        chunks, part = _chunks_reading(starts, low, high)
        blocks.append(_AxisBlock((first, stop), (low, high), low - start, max(0, end - high), chunks, part))
    return blocks


def _output_blocks(input_chunks, plan, axis: int) -> list[tuple[int, int]]:
    """Output ranges [a, b) along a spatial axis, following the input's chunk edges."""
    stride, padding = plan.stride[axis], plan.padding[axis]
    count = plan.output_spatial[axis]
    edges = np.cumsum(input_chunks)[:-1]
    cuts = sorted({0, count, *(int(min(max((edge + padding) // stride, 0), count)) for edge in edges)})
    return list(zip(cuts[:-1], cuts[1:]))


class _WholeGeometry:
    """What every block of one call shares: the whole plan, its canonical output shape."""

    def __init__(self, plan):
        self.plan = plan
        self.output_shape = plan.canonical_output_shape
        self.missing = _spec.CANONICAL_SPATIAL_DIMS - plan.layout.dims


class _Window:
    """One output block of a sliding-window pooling: its outputs, the input region they read, its plan.

    What an op's ``WindowBlocks.block`` reads: ``plan``, ``origin``, ``output_ranges``, ``whole_output_shape``.
    """

    def __init__(self, whole: _WholeGeometry, origin, blocks: list[_AxisBlock], block_sizes):
        self.input_ranges = [block.inputs for block in blocks]
        self.plan = replace(
            whole.plan,
            batch=block_sizes[0],
            channels=block_sizes[1],
            input_spatial=tuple(high - low for low, high in self.input_ranges),
            output_spatial=tuple(stop - first for block in blocks for first, stop in [block.outputs]),
            padding=tuple(block.padding for block in blocks),
            padding_end=tuple(block.padding_end for block in blocks),
        )
        self.whole_input_spatial = whole.plan.input_spatial
        self.origin = (*origin, *(0,) * whole.missing, *(block.outputs[0] for block in blocks))
        self.output_ranges = (*((0, 1),) * whole.missing, *(block.outputs for block in blocks))  # canonical D, H, W
        self.whole_output_shape = whole.output_shape

    def global_indices(self, local: np.ndarray) -> np.ndarray:
        """Flat indices within the region's planes -> flat indices within the whole input's planes."""
        coordinates = np.unravel_index(local, self.plan.input_spatial)
        shifted = tuple(c + low for c, (low, _) in zip(coordinates, self.input_ranges))
        return np.ravel_multi_index(shifted, self.whole_input_spatial).astype(np.int64)


def _window_task(block: Callable, window: _Window, shared, grid_shape: tuple, local_index: tuple, chunks: list):
    """One output block, run in a dask worker: join the input chunks its windows read, then the op's ``block``
    pools them with the whole array's window geometry; indices become flat positions in the whole planes."""
    result = block(_join_chunks(chunks, grid_shape)[local_index], window, shared)
    if isinstance(result, tuple):
        values, indices = result
        return values, window.global_indices(indices)
    return result


# --------------------------------------------------------------------------- block geometry


def _bounds(chunks) -> list[tuple[int, int]]:
    edges = np.cumsum((0, *chunks))
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def _resized(shape, channel_axis: int, batch: int, channels: int) -> tuple[int, ...]:
    shape = list(shape)
    shape[0], shape[channel_axis] = batch, channels
    return tuple(shape)


# --------------------------------------------------------------------------- multiscale pyramids


def pyramid(x, levels: int, method: str = "avg", kernel_size=2, stride=None, *, dims: int = 2, channels_last: bool = False):
    """A multiscale pyramid: ``[x, pool(x), pool(pool(x)), ...]``, ``levels + 1`` lazy arrays.

    Parameters
    ----------
    x : dask array (or NumPy array, wrapped with its own single chunk)
        ``(N, C, *spatial)`` or unbatched, in the layout ``channels_last`` says.
    levels : int
        How many times to pool (>= 0).
    method : "avg" or "max"
        Average pooling (smooth downsampling) or max pooling (keeps bright detail).
    kernel_size, stride
        The window of each level (stride defaults to ``kernel_size``).
    dims : 1, 2 or 3
        The number of spatial dims.

    Returns
    -------
    list of dask arrays, the finest (``x``) first.

    Raises
    ------
    ValueError
        For a bad ``levels``, ``method`` or ``dims``, or when a level becomes smaller than the window.
    """
    if method not in ("avg", "max"):
        raise ValueError(f"pyramid: method must be 'avg' or 'max'; got {method!r}")
    if not _spec.is_integer(levels) or levels < 0:
        raise ValueError(f"pyramid: levels must be an int >= 0; got {levels!r}")
    if dims not in (1, 2, 3):
        raise ValueError(f"pyramid: dims must be 1, 2 or 3; got {dims!r}")
    pool = getattr(functional, f"{method}_pool{dims}d")
    current = x if isinstance(x, da.Array) else da.from_array(np.asarray(x))
    result = [current]
    for _ in range(levels):
        current = pool(current, kernel_size, stride, channels_last=channels_last)
        result.append(current)
    return result
