"""Compile every CUDA kernel to PTX for a real GPU, without one, and inspect the code.

    python -m bench.cuda_compile_check [--cc 9.0]

Needs numba-cuda with the CUDA compilers (``pip install "numba-cuda[cu12]"``,
which brings NVVM and NVRTC); no GPU and no driver. The simulator runs kernels
as Python, so it cannot show that they compile for a device; this can. For
each float32 kernel it counts float64 instructions (there must be none, except
in stochastic pooling, whose pick arithmetic is float64 on purpose to match
the CPU's picks) and 64-bit integer divisions. Exits 1 on a compile error or
an unexpected float64 instruction.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    sys.exit("bench.cuda_compile_check compiles for a real GPU: unset NUMBA_ENABLE_CUDASIM")

import numpy as np  # noqa: E402
import numba.cuda.dispatcher as cuda_dispatcher  # noqa: E402
from numba import cuda, from_dtype, types  # noqa: E402


class _TargetDevice:
    """Device functions compile for the current device's compute capability; pretend there is one."""

    compute_capability = (9, 0)


def _array(dtype, ndim=5, layout="A"):
    return types.Array(from_dtype(np.dtype(dtype)), ndim, layout)


def kernels(dtype):
    """(name, kernel, argument types of its ``args`` tuple) for every per-element kernel."""
    from numba_pool.backends.cuda import _routing, adaptive_pool, avg_pool, global_pool, max_pool, stochastic_pool

    data, index = _array(dtype), _array(np.int64)
    scalar = from_dtype(np.dtype(dtype))
    triple = types.UniTuple(types.int64, 3)
    five = types.UniTuple(types.int64, 5)
    per_axis = _array(dtype, 1, "C")
    ranges = _array(np.int64, 2, "C")
    counts = _array(np.int64, 1, "C")
    return [
        ("max forward", max_pool._max_forward, (data, data, index, triple, triple, triple, triple, types.boolean)),
        ("avg forward", avg_pool._avg_forward, (data, data, triple, triple, triple, per_axis, per_axis, per_axis, scalar)),
        ("avg backward", avg_pool._avg_backward, (data, data, ranges, ranges, ranges, per_axis, per_axis, per_axis, scalar)),
        ("index summary", _routing._note_indices, (index, types.int64, types.int64, types.int64, counts, counts, counts, types.int64, types.int64)),
        ("routed backward", _routing._gather_by_index, (data, index, data, ranges, ranges, ranges, scalar, types.boolean)),
        ("stochastic forward", stochastic_pool._stochastic_forward, (data, data, index, triple, triple, triple, types.uint64, five, five, types.boolean, types.boolean)),
        ("stochastic inference backward", stochastic_pool._inference_backward, (data, data, data, triple, triple, triple, ranges, ranges, ranges)),
        ("global avg forward (channels last)", global_pool._thread_means, (data, _array(dtype, 2), scalar)),
        ("global avg backward", global_pool._broadcast, (_array(dtype, 2), data, scalar)),
        ("adaptive max forward", adaptive_pool._max_forward, (data, data, index, ranges, ranges, ranges, types.boolean)),
        ("adaptive avg forward", adaptive_pool._avg_forward, (data, data, ranges, ranges, ranges, per_axis, per_axis, per_axis, scalar)),
        ("adaptive avg backward", adaptive_pool._avg_backward, (data, data, ranges, ranges, ranges, per_axis, per_axis, per_axis, scalar)),
    ]


FLOAT64_ON_PURPOSE = {"stochastic forward", "stochastic inference backward"}
_FLOAT64 = re.compile(r"\.f64\b")
_DIVISION64 = re.compile(r"\b(div|rem)\.[su]64\b")


def _instructions(ptx: str) -> list[str]:
    return [line.strip() for line in ptx.splitlines() if line.strip() and not line.strip().startswith(("//", "."))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cc", default="9.0", help="compute capability to compile for (default 9.0: H100/H200)")
    args = parser.parse_args(argv)
    cc = tuple(int(part) for part in args.cc.split("."))
    _TargetDevice.compute_capability = cc
    cuda_dispatcher.get_current_device = _TargetDevice
    shape = types.UniTuple(types.int64, 5)
    failures = 0
    print(f"{'kernel':34} {'dtype':8} {'PTX lines':>9} {'f64 ops':>8} {'64-bit div/rem':>15}")
    integer_kernels = {"max forward", "adaptive max forward", "routed backward", "global max forward (blocks)"}
    for dtype in (np.float32, np.float64, np.int16):
        entries = kernels(dtype)
        block_kernels = [("global avg forward (blocks)", None, None), ("global max forward (blocks)", None, None)]
        if dtype == np.int16:  # max pooling, its global and adaptive forms and unpooling take integers
            entries = [entry for entry in entries if entry[0] in integer_kernels]
            block_kernels = block_kernels[1:]
        for name, kernel, argument_types in entries + block_kernels:
            try:
                if kernel is None:
                    function, signature = block_kernel(name, dtype)
                else:
                    function = kernel.py_func
                    signature = (shape, types.boolean, types.Tuple(argument_types))
                ptx, _ = cuda.compile_ptx(function, signature, cc=cc)
            except Exception as error:  # report every kernel, then fail
                print(f"{name:34} {np.dtype(dtype).name:8} COMPILE ERROR: {type(error).__name__}: {str(error)[:300]}")
                failures += 1
                continue
            lines = _instructions(ptx)
            float64 = sum(bool(_FLOAT64.search(line)) for line in lines)
            divisions = sum(bool(_DIVISION64.search(line)) for line in lines)
            unexpected = dtype == np.float32 and float64 and name not in FLOAT64_ON_PURPOSE
            failures += bool(unexpected)
            flag = "  <- float64 in a float32 kernel" if unexpected else ""
            print(f"{name:34} {np.dtype(dtype).name:8} {len(lines):9} {float64:8} {divisions:15}{flag}")
    print("all kernels compile" if not failures else f"{failures} problems")
    return 1 if failures else 0


def block_kernel(name, dtype):
    """(Python function, signature) of the global-pooling kernels that take whole blocks."""
    from numba_pool.backends.cuda import global_pool

    data, scalar = _array(dtype), from_dtype(np.dtype(dtype))
    if "avg" in name:
        return global_pool._block_means(np.dtype(dtype)).py_func, (data, _array(dtype, 2), scalar)
    return global_pool._block_maxima(np.dtype(dtype)).py_func, (data, data, _array(np.int64), types.boolean)


if __name__ == "__main__":
    sys.exit(main())
