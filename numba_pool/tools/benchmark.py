"""Side-by-side timing: numba_pool vs PyTorch (CPU, same memory layout) vs NumPy vs the memory floor.

    numba-pool bench                        # the full table (also: python -m bench.compare)
    numba-pool bench --quick                # small shapes, fewer repeats
    numba-pool bench --ops max_forward avg_backward --layout nhwc --json out.json
    numba-pool bench --dtype both           # float32 and float16 rows (torch: its half ops)

Every case is timed interleaved (ours, torch, numpy, ours, torch, ...), and the
median of the repeats after a warm-up call is reported. Where scikit-image or
SciPy is installed, the table also times what a NumPy user would pick instead,
on the cases those libraries express exactly (``skimage.measure.block_reduce``
for non-overlapping max/mean windows; ``scipy.ndimage.maximum_filter`` /
``uniform_filter`` sampled every ``stride``-th pixel for any window): each
peer's result is checked against numba_pool's before it is timed, and a peer
that disagrees is left out of the row (``excluded`` in the JSON). The memory floor of a
case is bytes read / read bandwidth + bytes written / write bandwidth, with
both bandwidths measured in this run by trivial parallel streaming kernels.
Read the ratios: absolute times on a shared machine are noise.

About 450 lines in one module: the cases, the contenders (ours, PyTorch,
NumPy, the peers), the bandwidth probe and the table are read together
whenever a figure looks wrong, and none is used elsewhere.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import numba
import numpy as np
from numba import njit, prange
from numpy.lib.stride_tricks import sliding_window_view

from .. import __version__
from .. import functional as nb

LARGE_SHAPES = [(64, 256, 28, 28), (32, 64, 112, 112)]
QUICK_SHAPES = [(8, 32, 28, 28)]
WINDOWS = [(2, 2), (3, 2)]
TINY_SHAPE = (1, 1, 4, 4)
OPS = [
    "max_forward", "max_forward_indices", "max_backward", "avg_forward", "avg_backward",
    "global_avg_forward", "global_avg_backward", "stochastic_forward_indices", "stochastic_inference",
]
DTYPE_CHOICES = {"float32": ("float32",), "float16": ("float16",), "both": ("float32", "float16")}  # --dtype
DTYPE_HELP = "data dtype; 'both' times float16 next to float32 on each case, PyTorch with its half ops (default float32)"
REUSED = "numba_pool out="  # backward passes writing into a buffer reused from call to call
WINDOWLESS_OPS = {"global_avg_forward", "global_avg_backward"}
PEERS = ("skimage", "scipy")  # NumPy-world peers, columns when installed


# --------------------------------------------------------------------------- memory bandwidth


@njit(parallel=True, cache=True, fastmath={"reassoc"})  # reassociation lets the sum vectorise
def _stream_read(array):
    total = 0.0
    for i in prange(array.size):
        total += array[i]
    return total


@njit(parallel=True, cache=True)
def _stream_write(array, value):
    for i in prange(array.size):
        array[i] = value


def measure_bandwidth(repeats: int, megabytes: int = 512) -> tuple[float, float]:
    """(read, write) bandwidth in bytes per second, from streaming a buffer much larger than the caches."""
    buffer = np.ones(megabytes * 2**20 // 4, np.float32)
    read = median_seconds(lambda: _stream_read(buffer), repeats)
    write = median_seconds(lambda: _stream_write(buffer, np.float32(2.0)), repeats)
    return buffer.nbytes / read, buffer.nbytes / write


def median_seconds(function: Callable[[], object], repeats: int) -> float:
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# --------------------------------------------------------------------------- cases


@dataclass
class Case:
    op: str
    shape: tuple
    kernel: int
    stride: int
    layout: str  # "nchw" or "nhwc"
    dtype: str = "float32"
    bytes_read: int = 0
    bytes_written: int = 0
    functions: dict = field(default_factory=dict, repr=False)
    excluded: dict = field(default_factory=dict)  # peer name -> why it is not timed

    @property
    def label(self) -> str:
        window = "" if self.op in WINDOWLESS_OPS else f" k{self.kernel}s{self.stride}"
        half = " f16" if self.dtype == "float16" else ""
        return f"{self.shape}{window} {self.layout}{half}"


def _numpy_windows(x_nchw: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    return sliding_window_view(x_nchw, (kernel, kernel), axis=(2, 3))[:, :, ::stride, ::stride]


# --------------------------------------------------------------------------- NumPy-world peers


@functools.lru_cache(maxsize=None)
def _torch():
    """PyTorch, or None where it is not installed (the comparison is optional).

    Imported on first use, not with this module: the command line imports this module for every
    command, and importing PyTorch takes about 1 s.
    """
    try:
        import torch
    except ImportError:
        return None
    return torch


@functools.lru_cache(maxsize=None)
def _peer_modules() -> tuple:
    """(skimage.measure, scipy.ndimage), each None where not installed.

    Imported on first use, not with this module: the command line imports it for every command.
    """
    try:
        from skimage import measure
    except ImportError:
        measure = None
    try:
        from scipy import ndimage
    except ImportError:
        ndimage = None
    return measure, ndimage


def _spatial_axes(channels_last: bool) -> tuple:
    return (1, 2) if channels_last else (2, 3)


def block_reduce_pool2d(x: np.ndarray, kernel: int, reducer: Callable, channels_last: bool = False) -> np.ndarray:
    """k x k pooling with stride k and no padding by ``skimage.measure.block_reduce``.

    block_reduce pads a partial block at the end with a constant; pooling drops it
    (floor mode), so the input is first cut to the whole blocks.
    """
    covered, block = [slice(None)] * x.ndim, [1] * x.ndim
    for axis in _spatial_axes(channels_last):
        covered[axis] = slice(0, x.shape[axis] // kernel * kernel)
        block[axis] = kernel
    return _peer_modules()[0].block_reduce(x[tuple(covered)], tuple(block), reducer)


def filter_pool2d(x: np.ndarray, kernel: int, stride: int, window_filter: Callable, channels_last: bool = False) -> np.ndarray:
    """Pooling without padding by a full-resolution ``scipy.ndimage`` filter sampled every stride-th pixel.

    With origin 0 the filter's window at pixel j covers j - kernel // 2 ... j - kernel // 2 + kernel - 1,
    so pooling window i (starting at i * stride) is the filter's value at i * stride + kernel // 2.
    Those windows lie inside the input, so the filter's border mode never matters.
    """
    size, picked = [1] * x.ndim, [slice(None)] * x.ndim
    for axis in _spatial_axes(channels_last):
        pooled_length = (x.shape[axis] - kernel) // stride + 1
        first = kernel // 2
        size[axis] = kernel
        picked[axis] = slice(first, first + (pooled_length - 1) * stride + 1, stride)
    return window_filter(x, size=tuple(size))[tuple(picked)]


def _peer_functions(op: str, x: np.ndarray, kernel: int, stride: int, channels_last: bool) -> dict:
    """The installed NumPy-world peers that can express ``op`` (forward max/avg pooling, no padding)."""
    reducers = {"max_forward": (np.max, "maximum_filter"), "avg_forward": (np.mean, "uniform_filter")}
    if op not in reducers:
        return {}
    reducer, filter_name = reducers[op]
    measure, ndimage = _peer_modules()
    peers = {}
    if measure is not None and kernel == stride:  # block_reduce has no overlapping windows
        peers["skimage"] = lambda: block_reduce_pool2d(x, kernel, reducer, channels_last)
    if ndimage is not None:
        window_filter = getattr(ndimage, filter_name)
        peers["scipy"] = lambda: filter_pool2d(x, kernel, stride, window_filter, channels_last)
    return peers


def same_pooled_values(op: str, peer_result: np.ndarray, ours: np.ndarray) -> bool:
    """Whether a peer computed the same pooling: max exactly, averages to float32 rounding.

    The peers sum in other orders (uniform_filter runs one axis at a time and rounds to
    the input's dtype in between), so averages agree to a few units in the last place.
    """
    if peer_result.shape != ours.shape or peer_result.dtype != ours.dtype:
        return False
    if op == "max_forward":
        return bool(np.array_equal(peer_result, ours, equal_nan=True))
    resolution = np.finfo(ours.dtype).resolution
    return bool(np.allclose(peer_result, ours, rtol=10 * resolution, atol=10 * resolution, equal_nan=True))


def _difference(result: np.ndarray, expected: np.ndarray) -> str:
    if result.shape != expected.shape or result.dtype != expected.dtype:
        return f"{result.shape} {result.dtype} instead of {expected.shape} {expected.dtype}"
    return f"largest difference {np.nanmax(np.abs(result.astype(np.float64) - expected)):.3g}"


def checked_peers(op: str, peers: dict, ours: Callable) -> tuple[dict, dict]:
    """(peers that compute the same values as ``ours``, {name: why the others are left out})."""
    if not peers:
        return {}, {}
    expected = ours()
    agreeing, excluded = {}, {}
    for name, function in peers.items():
        result = np.asarray(function())
        if same_pooled_values(op, result, expected):
            agreeing[name] = function
        else:
            excluded[name] = f"{name} computed other values: {_difference(result, expected)}"
            print(f"bench: {op}: {excluded[name]}; not timed", file=sys.stderr)
    return agreeing, excluded


def build_case(op: str, shape: tuple, kernel: int, stride: int, layout: str, dtype=np.float32) -> Case:
    """Arrays and the three contenders' callables for one case."""
    rng = np.random.default_rng(0)
    x_nchw = rng.standard_normal(shape, dtype=np.float64).astype(dtype)
    channels_last = layout == "nhwc"
    x = np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1)) if channels_last else x_nchw
    view = dict(channels_last=channels_last)
    y, indices = nb.max_pool2d(x, kernel, stride, return_indices=True, **view)
    grad = np.ones_like(y)
    pooled_grad = np.ones_like(nb.global_avg_pool2d(x, **view))
    ours = {
        "max_forward": lambda: nb.max_pool2d(x, kernel, stride, **view),
        "max_forward_indices": lambda: nb.max_pool2d(x, kernel, stride, return_indices=True, **view),
        "max_backward": lambda: nb.max_pool2d_backward(grad, indices, x.shape, **view),
        "avg_forward": lambda: nb.avg_pool2d(x, kernel, stride, **view),
        "avg_backward": lambda: nb.avg_pool2d_backward(grad, x.shape, kernel, stride, **view),
        "global_avg_forward": lambda: nb.global_avg_pool2d(x, **view),
        "global_avg_backward": lambda: nb.global_avg_pool2d_backward(pooled_grad, x.shape, **view),
        "stochastic_forward_indices": lambda: nb.stochastic_pool2d(x, kernel, stride, seed=1, return_indices=True, **view),
        "stochastic_inference": lambda: nb.stochastic_pool2d(x, kernel, stride, training=False, **view),
    }
    gradient = np.empty_like(x)  # a training loop's reused gradient buffer: no page faults after the first step
    reused = {
        "max_backward": lambda: nb.max_pool2d_backward(grad, indices, x.shape, out=gradient, **view),
        "avg_backward": lambda: nb.avg_pool2d_backward(grad, x.shape, kernel, stride, out=gradient, **view),
        "global_avg_backward": lambda: nb.global_avg_pool2d_backward(pooled_grad, x.shape, out=gradient, **view),
    }
    numpy_baseline = {
        "max_forward": lambda: _numpy_windows(x_nchw, kernel, stride).max(axis=(-2, -1)),
        "avg_forward": lambda: _numpy_windows(x_nchw, kernel, stride).mean(axis=(-2, -1)),
        "global_avg_forward": lambda: x_nchw.mean(axis=(2, 3)),
    }
    item, out_items, in_items = x.itemsize, y.size, x.size
    traffic = {  # (bytes read, bytes written); indices are int64
        "max_forward": (in_items * item, out_items * item),
        "max_forward_indices": (in_items * item, out_items * (item + 8)),
        "max_backward": (out_items * (item + 8), in_items * item),
        "avg_forward": (in_items * item, out_items * item),
        "avg_backward": (out_items * item, in_items * item),
        "global_avg_forward": (in_items * item, pooled_grad.size * item),
        "global_avg_backward": (pooled_grad.size * item, in_items * item),
        "stochastic_forward_indices": (in_items * item, out_items * (item + 8)),
        "stochastic_inference": (in_items * item, out_items * item),
    }
    functions = {"numba_pool": ours[op]}
    if op in reused:
        functions[REUSED] = reused[op]
    if op in numpy_baseline:
        functions["numpy"] = numpy_baseline[op]
    # The NumPy-world peers have no float16 kernels (they would time a conversion, or refuse).
    candidates = _peer_functions(op, x, kernel, stride, channels_last) if x.dtype != np.float16 else {}
    peers, excluded = checked_peers(op, candidates, ours[op])
    functions.update(peers)
    if _torch() is not None:
        torch_function = _torch_function(op, x_nchw, kernel, stride, channels_last)
        if torch_function is not None:
            functions["torch"] = torch_function
    read, written = traffic[op]
    return Case(op, shape, kernel, stride, layout, np.dtype(dtype).name, read, written, functions, excluded)


def _torch_function(op: str, x_nchw: np.ndarray, kernel: int, stride: int, channels_last: bool) -> Optional[Callable]:
    torch = _torch()
    F = torch.nn.functional
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.from_numpy(x_nchw).contiguous(memory_format=memory_format)
    y, indices = F.max_pool2d(x, kernel, stride, return_indices=True)
    grad = torch.ones_like(y)
    pooled = F.adaptive_avg_pool2d(x, 1)
    pooled_grad = torch.ones_like(pooled)
    aten = torch.ops.aten
    functions = {
        "max_forward": lambda: F.max_pool2d(x, kernel, stride),
        "max_forward_indices": lambda: F.max_pool2d(x, kernel, stride, return_indices=True),
        "max_backward": lambda: aten.max_pool2d_with_indices_backward(grad, x, [kernel] * 2, [stride] * 2, [0, 0], [1, 1], False, indices),
        "avg_forward": lambda: F.avg_pool2d(x, kernel, stride),
        "avg_backward": lambda: aten.avg_pool2d_backward(grad, x, [kernel] * 2, [stride] * 2, [0, 0], False, True, None),
        "global_avg_forward": lambda: F.adaptive_avg_pool2d(x, 1),
        "global_avg_backward": lambda: aten._adaptive_avg_pool2d_backward(pooled_grad, x),
    }
    return functions.get(op)


def time_case(case: Case, repeats: int) -> tuple[dict, dict]:
    """Interleaved timing: each repeat runs every contender once, in turn.

    Returns (medians, spreads): seconds by contender, and (min, median, max) by contender.
    """
    for function in case.functions.values():
        function()  # warm-up: compilation, first-touch allocation
    times = {name: [] for name in case.functions}
    for _ in range(repeats):
        for name, function in case.functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    spreads = {name: (min(values), statistics.median(values), max(values)) for name, values in times.items()}
    return {name: spread[1] for name, spread in spreads.items()}, spreads


# --------------------------------------------------------------------------- running and printing


def selected_cases(ops, layouts, quick: bool, dtypes=("float32",)):
    """(op, shape, kernel, stride, layout, dtype) of each row; a case's dtypes come in adjacent rows."""
    shapes = QUICK_SHAPES if quick else LARGE_SHAPES
    for shape in shapes:
        for layout in layouts:
            for op in ops:
                windows = WINDOWS[:1] if op in WINDOWLESS_OPS else WINDOWS
                for kernel, stride in windows:
                    for dtype in dtypes:
                        yield op, shape, kernel, stride, layout, dtype
    for layout in layouts:
        for op in ops:
            for dtype in dtypes:
                yield op, TINY_SHAPE, 2, 2, layout, dtype


def run(ops, layouts, quick: bool, repeats: int, progress=None, dtypes=("float32",)) -> dict:
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    torch = _torch()
    if torch is not None:
        torch.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    read_bandwidth, write_bandwidth = measure_bandwidth(repeats, megabytes=64 if quick else 512)
    rows = []
    plan = list(selected_cases(ops, layouts, quick, dtypes))
    for index, (op, shape, kernel, stride, layout, dtype) in enumerate(plan):
        if progress:
            progress(index, len(plan), f"{op} {shape} {layout} {dtype}")
        case = build_case(op, shape, kernel, stride, layout, np.dtype(dtype))
        times, spreads = time_case(case, repeats if shape != TINY_SHAPE else repeats * 20)
        floor = case.bytes_read / read_bandwidth + case.bytes_written / write_bandwidth
        row = {k: v for k, v in asdict(case).items() if k != "functions"}
        row.update(label=case.label, seconds=times, spread_seconds=spreads, floor_seconds=floor)
        rows.append(row)
    return {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "threads": numba.config.NUMBA_NUM_THREADS,
        "threading_layer": numba.threading_layer(),
        "versions": {
            "numba_pool": __version__, "numba": numba.__version__, "numpy": np.__version__,
            "torch": torch.__version__ if torch is not None else None, "python": platform.python_version(),
            "scikit-image": _version_of("skimage") if _peer_modules()[0] is not None else None,
            "scipy": _version_of("scipy") if _peer_modules()[1] is not None else None,
        },
        "read_bandwidth_gbs": read_bandwidth / 1e9,
        "write_bandwidth_gbs": write_bandwidth / 1e9,
        "rows": rows,
    }


def _version_of(module_name: str) -> str:
    return sys.modules[module_name].__version__


def format_table(result: dict) -> str:
    def ms(value):
        return f"{value * 1e3:9.3f}" if value is not None else f"{'-':>9}"

    def ratio(a, b):
        return f" {a / b:7.3g}" if a is not None and b else f"{'-':>8}"

    # The NumPy-world peers get a column only when some row timed them (they are optional installs).
    peers = [name for name in PEERS if any(name in row["seconds"] for row in result["rows"])]
    def spread(row, name):
        low, _, high = row.get("spread_seconds", {}).get(name, (None, None, None))
        return f"  {low * 1e3:.3g}-{high * 1e3:.3g}" if low is not None else ""

    lines = [
        f"threads {result['threads']} ({result['threading_layer']}), read {result['read_bandwidth_gbs']:.1f} GB/s, "
        f"write {result['write_bandwidth_gbs']:.1f} GB/s; times in ms, medians; 'out=': backward into a reused "
        "buffer; last column: ours min-max",
        f"{'case':<34}{'op':<28}{'ours':>9}{'out=':>9}{'torch':>9}{'numpy':>9}"
        + "".join(f"{name:>9}" for name in peers)
        + f"{'floor':>9}{'/torch':>8}{'/floor':>8}{'out=/fl':>8}",
    ]
    for row in result["rows"]:
        seconds = row["seconds"]
        ours, theirs, numpy_time = seconds["numba_pool"], seconds.get("torch"), seconds.get("numpy")
        reused = seconds.get(REUSED)
        lines.append(
            f"{row['label']:<34}{row['op']:<28}{ms(ours)}{ms(reused)}{ms(theirs)}{ms(numpy_time)}"
            + "".join(ms(seconds.get(name)) for name in peers)
            + f"{ms(row['floor_seconds'])}{ratio(ours, theirs)}{ratio(ours, row['floor_seconds'])}"
            + f"{ratio(reused, row['floor_seconds'])}{spread(row, 'numba_pool')}"
        )
    return "\n".join(lines)


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="numba_pool vs PyTorch vs NumPy vs the memory floor (CPU)")
    parser.add_argument("--quick", action="store_true", help="small shapes and few repeats (a smoke run)")
    parser.add_argument("--ops", nargs="+", choices=OPS, default=OPS, help="which ops (default: all)")
    parser.add_argument("--layout", choices=["nchw", "nhwc", "both"], default="both")
    parser.add_argument("--dtype", choices=list(DTYPE_CHOICES), default="float32", help=DTYPE_HELP)
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per contender (default 15, quick 3)")
    parser.add_argument("--json", metavar="FILE", help="also write the raw figures as JSON")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    from pathlib import Path

    from ._usage import EXIT_USAGE, UsageError, require_writable

    args = parse_arguments(argv)
    if args.json:
        try:
            require_writable(Path(args.json), "--json")  # before the minutes of timing, not after them
        except UsageError as error:
            print(f"bench: {error}", file=sys.stderr)
            return EXIT_USAGE
    layouts = ["nchw", "nhwc"] if args.layout == "both" else [args.layout]
    repeats = args.repeats or (3 if args.quick else 15)

    def progress(index, total, what):
        print(f"[{index + 1}/{total}] {what}", file=sys.stderr, flush=True)

    result = run(args.ops, layouts, args.quick, repeats, progress, DTYPE_CHOICES[args.dtype])
    print(format_table(result))
    if args.json:
        with open(args.json, "w") as handle:
            handle.write(to_json(result))
    return 0


def to_json(result: dict) -> str:
    """The raw figures of ``run`` as JSON text."""
    return json.dumps(result, indent=1, default=str)


if __name__ == "__main__":
    raise SystemExit(main())
