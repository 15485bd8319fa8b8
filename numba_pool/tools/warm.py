"""``numba-pool warm`` / ``numba_pool.warm()``: compile the CPU kernels into Numba's on-disk cache ahead of use.

Numba compiles a kernel on its first call for each argument type, and saves
the result on disk (``cache=True``); a new process then loads it in
milliseconds. Warming makes those first calls at image-build time: each op's
``warm`` hook (in its op module) runs its public functions forward and
backward on a small array of each chosen dtype, layout and dimensionality,
once on the serial twins that small calls use and once on the parallel
kernels that large calls use.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable, Optional, Sequence

import numpy as np

from .. import functional
from ..backends.cpu import _threading
from ..ops import BY_NAME, DIMENSIONALITIES, OPS

DEFAULT_DTYPES = ("float32",)
DEFAULT_DIMS = (2,)
LAYOUTS = ("nchw", "nhwc")
_SMALL_SIDE = 6  # 2 x 3 x 6 x 6: every window size and stride the hooks use fits


def warmable_ops() -> list[str]:
    return [spec.name for spec in OPS if spec.warm is not None]


def _example(dims: int, dtype: np.dtype, channels_last: bool) -> np.ndarray:
    spatial = (_SMALL_SIDE,) * dims
    x = np.random.default_rng(0).standard_normal((2, 3) + spatial) * 10
    x = x.astype(dtype)
    return np.ascontiguousarray(np.moveaxis(x, 1, -1)) if channels_last else x


def _run_both_ways(hook: Callable, dims: int, x: np.ndarray, channels_last: bool) -> None:
    """The hook on the serial twins (small calls) and on the parallel kernels (SERIAL_BELOW = 0)."""
    hook(functional, dims, x, channels_last)
    saved = _threading.SERIAL_BELOW
    _threading.SERIAL_BELOW = 0
    try:
        hook(functional, dims, x, channels_last)
    finally:
        _threading.SERIAL_BELOW = saved


def _refuses_dtype(error: TypeError) -> bool:
    return "accepted dtypes" in str(error)


def warm(
    ops: Optional[Iterable[str]] = None,
    dtypes: Sequence = DEFAULT_DTYPES,
    dims: Sequence[int] = DEFAULT_DIMS,
    layouts: Sequence[str] = LAYOUTS,
    report: Optional[Callable[[str], None]] = None,
) -> float:
    """Compile the CPU kernels that these calls need into Numba's on-disk cache; return the seconds taken.

    Parameters
    ----------
    ops : iterable of str, optional
        Op names as in the registry (``"max_pool"``, ``"avg_pool"``, ...); default: every op.
    dtypes : sequence of dtype-likes, default ("float32",)
        An op that does not take a dtype (average pooling of integers) is skipped for it.
    dims : sequence of int, default (2,)
        Spatial dimensionalities, from 1, 2 and 3.
    layouts : sequence of str, default ("nchw", "nhwc")
        ``"nchw"`` for channels-first input, ``"nhwc"`` for ``channels_last=True``.
    report : callable, optional
        Called with one line per (op, dtype, dims, layout) warmed or skipped.

    The cache is where Numba puts it: next to the package when its directory is
    writable, else in the user's cache; ``NUMBA_CACHE_DIR`` chooses it (set it at
    build time and at run time alike).
    """
    names = warmable_ops() if ops is None else list(ops)
    unknown = [name for name in names if name not in BY_NAME or BY_NAME[name].warm is None]
    if unknown:
        raise ValueError(f"warm: ops must be among {', '.join(warmable_ops())}; got {', '.join(map(str, unknown))}")
    wrong_dims = [d for d in dims if d not in DIMENSIONALITIES]
    if wrong_dims:
        raise ValueError(f"warm: dims must be among 1, 2, 3; got {wrong_dims}")
    wrong_layouts = [layout for layout in layouts if layout not in LAYOUTS]
    if wrong_layouts:
        raise ValueError(f"warm: layouts must be among {', '.join(LAYOUTS)}; got {wrong_layouts}")
    resolved = [np.dtype(dtype) for dtype in dtypes]
    start = time.perf_counter()
    for name in names:
        for dtype in resolved:
            for d in dims:
                for layout in layouts:
                    line = _warm_one(BY_NAME[name].warm, name, dtype, d, layout)
                    if report is not None:
                        report(line)
    return time.perf_counter() - start


def _warm_one(hook: Callable, name: str, dtype: np.dtype, dims: int, layout: str) -> str:
    what = f"{name} {dims}-D {dtype.name} {layout}"
    started = time.perf_counter()
    try:
        _run_both_ways(hook, dims, _example(dims, dtype, layout == "nhwc"), layout == "nhwc")
    except TypeError as error:
        if not _refuses_dtype(error):
            raise
        return f"skipped {what}: the op does not take {dtype.name}"
    return f"warmed  {what} ({time.perf_counter() - started:.1f} s)"
