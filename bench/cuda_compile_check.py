"""Compile every CUDA kernel to PTX for a real GPU, without one, and inspect the code.

    python -m bench.cuda_compile_check [--cc 9.0]

Needs numba-cuda with the CUDA compilers (``pip install "numba-cuda[cu12]"``,
which brings NVVM and NVRTC); no GPU and no driver. The simulator runs kernels
as Python, so it cannot show that they compile for a device; this can. For
each float32 kernel it counts float64 instructions (there must be none, except
in stochastic pooling, whose pick arithmetic is float64 on purpose to match
the CPU's picks: its ``CudaKernel`` says ``float64=True``) and 64-bit integer divisions. Exits 1 on a compile error or
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
from numba import cuda, types  # noqa: E402

from numba_pool.ops import OPS  # noqa: E402
from numba_pool.ops._checks import KernelTypes  # noqa: E402


class _TargetDevice:
    """Device functions compile for the current device's compute capability; pretend there is one."""

    compute_capability = (9, 0)


def kernels(dtype) -> list:
    """Every op's CUDA kernels (its spec's ``cuda_kernels``) that take ``dtype`` (an integer dtype: those
    marked ``integers``, of the ops that keep integer inputs)."""
    integer = np.dtype(dtype).kind in "iu"
    return [kernel for spec in OPS for kernel in spec.cuda_kernels if kernel.integers or not integer]


def compile_target(entry, argument_types: KernelTypes):
    """(Python function, signature) to compile: a per-element kernel takes (shape, flag, its args tuple)."""
    kernel, signature = entry.target(argument_types)
    if entry.per_element:
        signature = (argument_types.five, types.boolean, types.Tuple(signature))
    return kernel.py_func, signature


def conversion_kernels() -> list:
    """(name, kernel, argument types) of the float16 <-> float32 conversions every op's float16 calls
    launch (``backends/cuda/_half.py``): integer arithmetic on bit patterns only."""
    from numba_pool.backends.cuda import _half

    half, single = KernelTypes.array(np.uint16), KernelTypes.array(np.uint32)
    return [("float16 -> float32", _half._widen_kernel, (half, single)), ("float32 -> float16", _half._narrow_kernel, (single, half))]


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
    failures = 0
    print(f"{'kernel':34} {'dtype':8} {'PTX lines':>9} {'f64 ops':>8} {'64-bit div/rem':>15}")
    for dtype in (np.float32, np.float64, np.int16):
        argument_types = KernelTypes(dtype)
        for entry in kernels(dtype):
            name = entry.name
            try:
                function, signature = compile_target(entry, argument_types)
                ptx, _ = cuda.compile_ptx(function, signature, cc=cc)
            except Exception as error:  # report every kernel, then fail
                print(f"{name:34} {np.dtype(dtype).name:8} COMPILE ERROR: {type(error).__name__}: {str(error)[:300]}")
                failures += 1
                continue
            lines = _instructions(ptx)
            float64 = sum(bool(_FLOAT64.search(line)) for line in lines)
            divisions = sum(bool(_DIVISION64.search(line)) for line in lines)
            unexpected = dtype == np.float32 and float64 and not entry.float64
            failures += bool(unexpected)
            flag = "  <- float64 in a float32 kernel" if unexpected else ""
            print(f"{name:34} {np.dtype(dtype).name:8} {len(lines):9} {float64:8} {divisions:15}{flag}")
    five = KernelTypes(np.float32).five
    for name, kernel, arguments in conversion_kernels():
        try:
            ptx, _ = cuda.compile_ptx(kernel.py_func, (five, types.boolean, types.Tuple(arguments)), cc=cc)
        except Exception as error:
            print(f"{name:34} {'bits':8} COMPILE ERROR: {type(error).__name__}: {str(error)[:300]}")
            failures += 1
            continue
        lines = _instructions(ptx)
        divisions = sum(bool(_DIVISION64.search(line)) for line in lines)
        print(f"{name:34} {'bits':8} {len(lines):9} {sum(bool(_FLOAT64.search(line)) for line in lines):8} {divisions:15}")
    print("all kernels compile" if not failures else f"{failures} problems")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
