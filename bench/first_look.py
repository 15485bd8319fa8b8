"""A first side-by-side timing of numba_pool against PyTorch's CPU ops.

Not the full benchmark (that is the CPU performance work): a handful of
cases, interleaved, median of repeats after warm-up, printed as ratios.

    python -m bench.first_look
"""

from __future__ import annotations

import statistics
import time

import numpy as np

import numba_pool as nb

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # the comparison is optional
    torch = None

REPEATS = 15
CASES = [((64, 256, 28, 28), 2, 2), ((32, 64, 112, 112), 3, 2)]


def median_seconds(function) -> float:
    function()  # warm-up (compiles on first use)
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def rows():
    rng = np.random.default_rng(0)
    for shape, kernel, stride in CASES:
        x = rng.standard_normal(shape, dtype=np.float32)
        y, indices = nb.max_pool2d(x, kernel, stride, return_indices=True)
        grad = np.ones_like(y)
        ours = {
            "max forward": lambda: nb.max_pool2d(x, kernel, stride),
            "max backward": lambda: nb.max_pool2d_backward(grad, indices, x.shape),
            "avg forward": lambda: nb.avg_pool2d(x, kernel, stride),
            "avg backward": lambda: nb.avg_pool2d_backward(grad, x.shape, kernel, stride),
        }
        theirs = {}
        if torch is not None:
            xt = torch.from_numpy(x)
            gt = torch.from_numpy(grad)
            it = torch.from_numpy(indices)
            theirs = {
                "max forward": lambda: F.max_pool2d(xt, kernel, stride),
                "max backward": lambda: torch.ops.aten.max_pool2d_with_indices_backward(
                    gt, xt, [kernel] * 2, [stride] * 2, [0, 0], [1, 1], False, it
                ),
                "avg forward": lambda: F.avg_pool2d(xt, kernel, stride),
                "avg backward": lambda: torch.ops.aten.avg_pool2d_backward(
                    gt, xt, [kernel] * 2, [stride] * 2, [0, 0], False, True, None
                ),
            }
        for op, function in ours.items():
            ours_time = median_seconds(function)
            torch_time = median_seconds(theirs[op]) if op in theirs else float("nan")
            yield f"{shape} k{kernel}s{stride}", op, ours_time, torch_time


def main() -> None:
    print(f"{'case':<26}{'op':<14}{'numba_pool ms':>14}{'torch ms':>10}{'ours/torch':>12}")
    for case, op, ours_time, torch_time in rows():
        print(f"{case:<26}{op:<14}{ours_time * 1e3:>14.2f}{torch_time * 1e3:>10.2f}{ours_time / torch_time:>12.2f}")


if __name__ == "__main__":
    main()
