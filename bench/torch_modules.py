"""numba_pool.torch modules against PyTorch's own, forward + backward through autograd (CPU).

    python -m bench.torch_modules [--repeats 11]

Interleaved medians after a warm-up call, float32, both memory formats. The
ratio is numba_pool's time over PyTorch's: below 1 means the swap pays.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import numba_pool.torch as nt

CASES = [
    ("MaxPool2d k3s2", (32, 64, 112, 112), lambda: nt.MaxPool2d(3, 2, 1), lambda: torch.nn.MaxPool2d(3, 2, 1)),
    ("MaxPool2d k2s2", (64, 256, 28, 28), lambda: nt.MaxPool2d(2), lambda: torch.nn.MaxPool2d(2)),
    ("AvgPool2d k3s2", (32, 64, 112, 112), lambda: nt.AvgPool2d(3, 2, 1), lambda: torch.nn.AvgPool2d(3, 2, 1)),
    ("AvgPool2d k2s2", (64, 256, 28, 28), lambda: nt.AvgPool2d(2), lambda: torch.nn.AvgPool2d(2)),
    ("GlobalAvgPool2d", (64, 256, 28, 28), lambda: nt.GlobalAvgPool2d(keepdims=True), lambda: torch.nn.AdaptiveAvgPool2d(1)),
]


def forward_backward(module, x):
    def step():
        x.grad = None
        module(x).sum().backward()

    return step


def median_seconds(functions, repeats):
    for function in functions:
        function()
    times = [[] for _ in functions]
    for _ in range(repeats):
        for i, function in enumerate(functions):
            started = time.perf_counter()
            function()
            times[i].append(time.perf_counter() - started)
    return [statistics.median(t) for t in times]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; forward + backward, ms (median)")
    print(f"{'module':18} {'shape':20} {'format':14} {'numba_pool':>10} {'torch':>8} {'ratio':>6}")
    for name, shape, ours, theirs in CASES:
        for memory_format in (torch.contiguous_format, torch.channels_last):
            x = torch.randn(shape).to(memory_format=memory_format).requires_grad_()
            ours_s, theirs_s = median_seconds([forward_backward(ours(), x), forward_backward(theirs(), x)], args.repeats)
            label = "channels_last" if memory_format is torch.channels_last else "contiguous"
            print(f"{name:18} {str(shape):20} {label:14} {ours_s * 1e3:10.2f} {theirs_s * 1e3:8.2f} {ours_s / theirs_s:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
