"""The ``numba-pool`` command (also ``python -m numba_pool``): demo, bench, check, warm and info.

Exit status: 0 success; 1 ``check`` found a mismatch; 2 bad arguments or an
unreadable input (argparse's convention); 3 an optional dependency is missing
(the message names the extra to install).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._usage import EXIT_MISMATCH, EXIT_MISSING_EXTRA, EXIT_USAGE, MissingExtra, UsageError, require_writable

MAX_DEMO_MEGAPIXELS = 4.0  # larger --image files are downscaled: the pooling is the same, memory stays small



def _int_at_least(minimum: int, description: str):
    """An argparse type: an integer >= ``minimum``, refused as "expected a <description> integer"."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {description} integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a {description} integer, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1, "positive")
_non_negative_int = _int_at_least(0, "non-negative")


def build_parser() -> argparse.ArgumentParser:
    from .benchmark import DTYPE_CHOICES, DTYPE_HELP, OPS
    from .warm import DEFAULT_DIMS, DEFAULT_DTYPES, LAYOUTS, warmable_ops

    parser = argparse.ArgumentParser(
        prog="numba-pool",
        description="Pooling kernels for NumPy and CUDA arrays, compiled by Numba: see them work on this machine.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="pool an image every way and save a picture of the results",
        description="Pool an image with max, average, stochastic (training and inference) and global average "
        "pooling, print the time each took, and save the results side by side in one picture.",
    )
    demo.add_argument(
        "--image", type=Path,
        help="an image file (read with Pillow; downscaled to at most "
        f"{MAX_DEMO_MEGAPIXELS:g} megapixels); default: a generated scene",
    )
    demo.add_argument(
        "--out", type=Path, default=Path("pooling.png"),
        help="where to write the picture; its extension picks the format, .png when it has none (default: %(default)s)",
    )
    demo.add_argument("--kernel", type=_positive_int, default=2, help="window size (default: %(default)s)")
    demo.add_argument("--stride", type=_positive_int, default=2, help="window step (default: %(default)s)")

    bench = commands.add_parser(
        "bench", help="time the CPU kernels against PyTorch, NumPy and the memory floor",
        description="Side-by-side CPU timings (medians after warm-up): numba_pool, PyTorch in the same memory "
        "layout when installed, NumPy's sliding windows, and the memory floor measured in the same run.",
    )
    bench.add_argument("--quick", action="store_true", help="small shapes and few repeats (a smoke run)")
    bench.add_argument("--ops", nargs="+", choices=OPS, default=OPS, metavar="OP", help=f"ops to time (default: all): {', '.join(OPS)}")
    bench.add_argument("--layout", choices=["nchw", "nhwc", "both"], default="both", help="memory layout (default: both)")
    bench.add_argument("--repeats", type=_positive_int, help="timed runs per contender (default: 15, or 3 with --quick)")
    bench.add_argument("--dtype", choices=list(DTYPE_CHOICES), default="float32", help=DTYPE_HELP)
    bench.add_argument("--json", type=Path, metavar="FILE", help="also write the raw figures as JSON")

    check = commands.add_parser(
        "check", help="check every op against the NumPy reference (CPU, and GPU when present)",
        description="A self-test for a deployment: every op on random data against the pure-NumPy reference, "
        "on the CPU and, when numba-cuda finds a GPU, on the GPU. One line per op; exit status 1 on a mismatch.",
    )
    check.add_argument("--cases", type=_positive_int, default=5, help="random configurations per op (default: %(default)s)")
    check.add_argument("--seed", type=_non_negative_int, default=0, help="random seed, >= 0 (default: %(default)s)")

    warm = commands.add_parser(
        "warm", help="compile the CPU kernels into Numba's on-disk cache (e.g. when building a container image)",
        description="Run every chosen op forward and backward on small arrays of each dtype, layout and "
        "dimensionality, so that a new process loads compiled kernels from Numba's cache instead of compiling "
        "them on its first calls. The cache goes where Numba puts it; NUMBA_CACHE_DIR chooses it.",
    )
    warm.add_argument("--ops", nargs="+", choices=warmable_ops(), metavar="OP", help=f"ops (default: all): {', '.join(warmable_ops())}")
    warm.add_argument("--dtypes", nargs="+", default=list(DEFAULT_DTYPES), metavar="DTYPE", help="dtypes (default: %(default)s)")
    warm.add_argument("--dims", nargs="+", type=int, choices=[1, 2, 3], default=list(DEFAULT_DIMS), help="spatial dims (default: %(default)s)")
    warm.add_argument("--layouts", nargs="+", choices=list(LAYOUTS), default=list(LAYOUTS), help="memory layouts (default: both)")

    commands.add_parser(
        "info", help="versions, threading, cache directory and CUDA devices",
        description="Print versions (numba_pool, numba, numpy, numba-cuda), the threading layer and thread "
        "count, Numba's cache directory, and whether CUDA is available with which devices.",
    )
    return parser


# --------------------------------------------------------------------------- the commands


def run_demo(args) -> int:
    from . import demo as _demo

    if args.image is not None and not args.image.is_file():
        raise UsageError(f"--image {args.image} is not a readable file")
    out = _demo.output_path(args.out)
    require_writable(out, "--out")
    _demo.run(args.image, out, args.kernel, args.stride, max_megapixels=MAX_DEMO_MEGAPIXELS)
    return 0


def run_bench(args) -> int:
    from . import benchmark

    if args.json:
        require_writable(args.json, "--json")
    try:
        from tqdm import tqdm
    except ImportError:
        raise MissingExtra('the progress bar of "numba-pool bench" needs tqdm: pip install "numba-pool[bench]"') from None
    layouts = ["nchw", "nhwc"] if args.layout == "both" else [args.layout]
    repeats = args.repeats or (3 if args.quick else 15)
    with tqdm(total=None, file=sys.stderr, unit="case", desc="bench") as bar:

        def progress(index, total, what):
            bar.total = total
            bar.set_postfix_str(what)
            bar.update(1 if index else 0)

        result = benchmark.run(args.ops, layouts, args.quick, repeats, progress, benchmark.DTYPE_CHOICES[args.dtype])
        bar.update(1)
    print(benchmark.format_table(result))
    if args.json:
        args.json.write_text(benchmark.to_json(result))
    return 0


def run_check(args) -> int:
    from .selfcheck import run_checks

    failures = run_checks(args.cases, args.seed)
    print("all ops agree with the NumPy reference" if not failures else f"{failures} op(s) disagree with the reference")
    return EXIT_MISMATCH if failures else 0


def run_warm(args) -> int:
    import numpy as np

    from .warm import warm

    for dtype in args.dtypes:
        try:
            np.dtype(dtype)
        except TypeError:
            raise UsageError(f"--dtypes: {dtype!r} is not a NumPy dtype (e.g. float32, float64, int32)") from None
    seconds = warm(args.ops, args.dtypes, args.dims, args.layouts, report=print)
    print(f"warmed in {seconds:.1f} s; Numba's cache: {_cache_directory()}")
    return 0


def run_info(args) -> int:
    for name, value in describe_installation():
        print(f"{name + ':':22} {value}")
    return 0


def describe_installation() -> list[tuple[str, str]]:
    import importlib.metadata
    import importlib.util
    import platform

    import numba
    import numpy

    from .. import __version__

    def version(distribution):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    from ..backends.cpu._threading import start_threading_layer

    layer = start_threading_layer() or "not started"  # a parallel kernel fixes the layer, so it can be named
    lines = [
        ("numba_pool", __version__),
        ("numba", numba.__version__),
        ("numpy", numpy.__version__),
        ("numba-cuda", version("numba-cuda")),
        ("python", platform.python_version()),
        ("threading layer", layer),
        ("threads", f"{numba.get_num_threads()} (NUMBA_NUM_THREADS={numba.config.NUMBA_NUM_THREADS})"),
        ("cache directory", _cache_directory()),
    ]
    return lines + _cuda_lines(importlib.util.find_spec("numba_cuda") is not None)


def _cache_directory() -> str:
    import numba

    return numba.config.CACHE_DIR or "next to each module (__pycache__), else the user's cache: Numba's default"


def _cuda_lines(installed: bool) -> list[tuple[str, str]]:
    if not installed:
        return [("CUDA", 'unavailable: numba-cuda is not installed (pip install "numba-pool[cuda]")')]
    from numba import cuda

    if not cuda.is_available():
        return [("CUDA", "unavailable: no GPU or driver found by numba-cuda")]
    simulated = " (numba's CUDA simulator: NUMBA_ENABLE_CUDASIM=1)" if _simulated() else ""
    devices = [f"{index}: {_device_name(device)}" for index, device in enumerate(cuda.gpus)]
    return [("CUDA", f"available{simulated}"), ("CUDA devices", "; ".join(devices) or "none")]


def _simulated() -> bool:
    from numba.cuda.core import config

    return bool(config.ENABLE_CUDASIM)


def _device_name(device) -> str:
    name = getattr(device, "name", device)
    return name.decode() if isinstance(name, bytes) else str(name)


COMMANDS = {"demo": run_demo, "bench": run_bench, "check": run_check, "warm": run_warm, "info": run_info}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except MissingExtra as missing:
        print(f"numba-pool {args.command}: {missing}", file=sys.stderr)
        return EXIT_MISSING_EXTRA
    except UsageError as error:
        print(f"numba-pool {args.command}: {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
