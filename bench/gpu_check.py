"""One script for a machine with an NVIDIA GPU: correctness, speed against PyTorch, and bandwidth.

    python -m bench.gpu_check            # the issue's shapes: (32, 64, 112, 112) and (128, 256, 28, 28)
    python -m bench.gpu_check --tiny     # tiny shapes; also runs under NUMBA_ENABLE_CUDASIM=1
    python -m bench.gpu_check --dtype float16   # float16 data (PyTorch: its half ops)

1. Every op (forward and backward, both layouts) runs on the device and on the
   CPU with the same random data; max, stochastic and routed results must agree
   bit for bit, sums to float32 rounding. Each array family present (numba,
   PyTorch CUDA tensors, CuPy) must get results of its own family back.
2. Forward and backward are timed with CUDA events (median of --repeats runs
   after warm-up) next to PyTorch's CUDA ops on the same tensors.
3. Achieved bandwidth is compared with a device-to-device copy measured in the
   same run: "x floor" is our time over the time the copy would take to move
   the op's bytes (reads + writes).

Prints a short table last; exits 1 if any op disagrees with the CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
from numba import cuda

import numba_pool as nb
from numba_pool.backends.cuda._arrays import SIMULATOR
from numba_pool.ops import OPS
from numba_pool.tools.cli import _positive_int  # the numba-pool command's check of counts
from numba_pool.tools.selfcheck import device_cases

FULL_SHAPES = [(32, 64, 112, 112), (128, 256, 28, 28)]
TINY_SHAPES = [(2, 3, 9, 8)]
WINDOWS = [(2, 2, 0), (3, 2, 0), (3, 2, "same")]  # (kernel, stride, padding); 'same' pads odd sizes unevenly
BENCHMARK_WINDOWS = [(kernel, stride) for kernel, stride, padding in WINDOWS if padding == 0]


def _torch_cuda():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() and not SIMULATOR else None


def _cupy():
    if SIMULATOR:
        return None
    try:
        import cupy

        cupy.cuda.runtime.getDeviceCount()
        return cupy
    except Exception:
        return None


# --------------------------------------------------------------------------- the ops, from the registry


def _cases(layout, ops=None) -> dict:
    """Each op's checks as {name: (function of (x, gradient_like), rule)}, for each of WINDOWS
    (``numba_pool.tools.selfcheck.device_cases``); the same function runs on either backend."""
    return device_cases(nb, layout == "nhwc", WINDOWS, ops)


# --------------------------------------------------------------------------- correctness


def _host(result):
    if isinstance(result, tuple):
        return tuple(_host(r) for r in result)
    if hasattr(result, "copy_to_host"):
        return result.copy_to_host()
    if hasattr(result, "get"):  # CuPy
        return result.get()
    return result.cpu().numpy()  # torch


def _gradient_like(seed, dtype=np.float32):
    """g(y): a reproducible gradient of y's shape and the data's ``dtype``, on y's side (host or device, same family)."""

    def make(y):
        host = np.random.default_rng(seed).standard_normal(tuple(y.shape)).astype(dtype)
        if isinstance(y, np.ndarray):
            return host
        return _to_family(np.ascontiguousarray(host), y)

    return make


def _to_family(host, like):
    module = type(like).__module__
    if module.startswith("torch"):
        import torch

        return torch.from_numpy(host).to(like.device)
    if module.startswith("cupy"):
        import cupy

        return cupy.asarray(host)
    return cuda.to_device(host)


def _layout_host(shape, layout, seed, dtype=np.float32):
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    return np.ascontiguousarray(np.moveaxis(x, 1, -1)) if layout == "nhwc" else x


def check(shapes, families, dtype=np.float32, ops=None) -> list[str]:
    """Compare every op on every family with the CPU; return the failures."""
    failures = []
    for shape in shapes:
        for layout in ("nchw", "nhwc"):
            host = _layout_host(shape, layout, seed=1, dtype=dtype)
            cases = _cases(layout, ops)
            for family, to_device in families.items():
                device_x = to_device(host)
                for name, (run, rule) in cases.items():
                    expected = run(host, _gradient_like(2, dtype))
                    got = run(device_x, _gradient_like(2, dtype))
                    problem = _compare(got, expected, rule, family)
                    status = "ok" if problem is None else f"MISMATCH: {problem}"
                    print(f"check {family:6} {layout} {str(shape):20} {name:24} {status}", flush=True)
                    if problem:
                        failures.append(f"{family} {layout} {shape} {name}: {problem}")
    return failures


def _compare(got, expected, rule, family):
    got_tuple = got if isinstance(got, tuple) else (got,)
    expected_tuple = expected if isinstance(expected, tuple) else (expected,)
    for g, e in zip(got_tuple, expected_tuple):
        if family != "numba" and not type(g).__module__.startswith(family):
            return f"result is a {type(g).__module__}.{type(g).__name__}, not a {family} array"
        g = _host(g)
        if g.shape != e.shape or g.dtype != e.dtype:
            return f"shape/dtype {g.shape} {g.dtype} instead of {e.shape} {e.dtype}"
        if rule == "exact" and not np.array_equal(g, e, equal_nan=True):
            return f"{int((g != e).sum())} elements differ"
        # float16 sums: the two float32 sums, each rounded once to float16, may fall one ulp (1e-3) apart
        tolerance = 2e-3 if e.dtype == np.float16 else 2e-5
        if rule == "close" and not np.allclose(g, e, rtol=tolerance, atol=tolerance):
            return f"max abs difference {float(np.abs(g - e).max()):.3g}"
    return None


# --------------------------------------------------------------------------- timing


def _median_ms(function, repeats, warmup=3):
    if SIMULATOR:  # no timings to take there (NaN); the timed runs prove the call works
        warmup = 0
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start, stop = cuda.event(), cuda.event()
        start.record()
        function()
        stop.record()
        stop.synchronize()
        times.append(cuda.event_elapsed_time(start, stop) if not SIMULATOR else float("nan"))
    cuda.synchronize()
    return statistics.median(times)


def _copy_bandwidth(nbytes, repeats):
    """Bytes per ms of a device-to-device copy of ``nbytes`` (read + write counted)."""
    source = cuda.device_array(nbytes // 4, np.float32)
    target = cuda.device_array(nbytes // 4, np.float32)
    milliseconds = _median_ms(lambda: target.copy_to_device(source), repeats)
    return 2 * nbytes / milliseconds


def _torch_ops(torch, kernel, stride):
    functional = torch.nn.functional
    aten = torch.ops.aten

    def max_backward(x, g):
        y, indices = functional.max_pool2d(x, kernel, stride, return_indices=True)
        return lambda: aten.max_pool2d_with_indices_backward(g, x, [kernel] * 2, [stride] * 2, [0, 0], [1, 1], False, indices)

    def avg_backward(x, g):
        return lambda: aten.avg_pool2d_backward(g, x, [kernel] * 2, [stride] * 2, [0, 0], False, True, None)

    return {
        "max fwd": lambda x, g: (lambda: functional.max_pool2d(x, kernel, stride, return_indices=True)),
        "max bwd": max_backward,
        "avg fwd": lambda x, g: (lambda: functional.avg_pool2d(x, kernel, stride)),
        "avg bwd": avg_backward,
    }


def benchmark(shapes, repeats, torch, dtype=np.float32) -> list[dict]:
    rows = []
    for shape in shapes:
        for layout in ("nchw", "nhwc"):
            host = _layout_host(shape, layout, seed=3, dtype=dtype)
            x = torch.from_numpy(host).cuda() if torch else cuda.to_device(host)
            bytes_per_ms = _copy_bandwidth(host.nbytes, repeats)
            for kernel, stride in BENCHMARK_WINDOWS:
                rows.extend(_benchmark_window(x, shape, layout, kernel, stride, repeats, torch, bytes_per_ms))
    return rows


def _benchmark_window(x, shape, layout, kernel, stride, repeats, torch, bytes_per_ms):
    last = layout == "nhwc"
    y, indices = nb.max_pool2d(x, kernel, stride, return_indices=True, channels_last=last)
    item = np.dtype(str(x.dtype).removeprefix("torch.")).itemsize
    g = _gradient_like(4, f"float{8 * item}")(y)
    input_bytes = int(np.prod(shape)) * item
    output_count = int(np.prod(tuple(y.shape)))
    with_indices = (item + 8) * output_count
    ours = {
        "max fwd": (lambda: nb.max_pool2d(x, kernel, stride, return_indices=True, channels_last=last), input_bytes + with_indices),
        "max bwd": (lambda: nb.max_pool2d_backward(g, indices, x.shape, channels_last=last), with_indices + input_bytes),
        "avg fwd": (lambda: nb.avg_pool2d(x, kernel, stride, channels_last=last), input_bytes + item * output_count),
        "avg bwd": (lambda: nb.avg_pool2d_backward(g, x.shape, kernel, stride, channels_last=last), item * output_count + input_bytes),
    }
    theirs = {}
    if torch:
        x_nchw = x.permute(0, 3, 1, 2) if last else x  # a channels_last tensor for PyTorch, same memory
        g_nchw = g.permute(0, 3, 1, 2) if last else g
        theirs = {name: make(x_nchw, g_nchw) for name, make in _torch_ops(torch, kernel, stride).items()}
    rows = []
    for name, (run, nbytes) in ours.items():
        milliseconds = _median_ms(run, repeats)
        torch_ms = _median_ms(theirs[name], repeats) if name in theirs else float("nan")
        rows.append(
            {
                "shape": shape, "layout": layout, "window": f"k{kernel}s{stride}", "op": name,
                "ours_ms": milliseconds, "torch_ms": torch_ms,
                "gb_per_s": nbytes / milliseconds / 1e6, "x_floor": milliseconds / (nbytes / bytes_per_ms),
            }
        )
        print(f"time  {layout} {str(shape):20} k{kernel}s{stride} {name:8} {milliseconds:9.4f} ms", flush=True)
    return rows


def format_table(rows) -> str:
    lines = [
        f"{'shape':20} {'layout':6} {'window':6} {'op':8} {'ours ms':>9} {'torch ms':>9} {'vs torch':>8} {'GB/s':>8} {'x floor':>7}",
    ]
    for row in rows:
        lines.append(
            f"{str(row['shape']):20} {row['layout']:6} {row['window']:6} {row['op']:8} {row['ours_ms']:9.4f} "
            f"{row['torch_ms']:9.4f} {row['torch_ms'] / row['ours_ms']:7.2f}x {row['gb_per_s']:8.1f} {row['x_floor']:7.2f}"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny shapes (works under NUMBA_ENABLE_CUDASIM=1)")
    parser.add_argument("--repeats", type=_positive_int, default=50, help="timed runs per op (median reported)")
    parser.add_argument("--json", metavar="FILE", help="also write the timings as JSON")
    parser.add_argument("--dtype", choices=["float32", "float16"], default="float32", help="data dtype (default float32)")
    names = [spec.name for spec in OPS if spec.device_checks is not None]
    parser.add_argument("--ops", nargs="+", choices=names, metavar="OP", help=f"ops to check (default: all): {', '.join(names)}")
    args = parser.parse_args(argv)
    if SIMULATOR:  # it polls one Python thread per CUDA thread: hand them over faster than every 5 ms
        sys.setswitchinterval(1e-4)
    dtype = np.dtype(args.dtype)
    shapes = TINY_SHAPES if args.tiny else FULL_SHAPES
    torch, cupy = _torch_cuda(), _cupy()
    device = "CUDA simulator" if SIMULATOR else cuda.get_current_device().name
    device = device.decode() if isinstance(device, bytes) else device
    print(f"device: {device}; torch CUDA: {bool(torch)}; cupy: {bool(cupy)}", flush=True)

    families = {"numba": lambda host: cuda.to_device(host)}
    if torch:
        families["torch"] = lambda host: torch.from_numpy(host).cuda()
    if cupy:
        families["cupy"] = lambda host: cupy.asarray(host)
    started = time.perf_counter()
    failures = check(shapes if args.tiny else shapes[1:], families, dtype, args.ops)  # the smaller full shape suffices for checking
    print(f"checked in {time.perf_counter() - started:.1f} s", flush=True)

    rows = benchmark(shapes, args.repeats, torch, dtype)
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"device": device, "rows": rows, "failures": failures}, file, indent=1)
    print()
    print(format_table(rows))
    if failures:
        print(f"\n{len(failures)} MISMATCHES:\n" + "\n".join(failures))
        return 1
    print("\nall ops agree with the CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
