"""``numba-pool check``: every op on random data against the pure-NumPy reference.

Runs on the CPU, and on the GPU when numba-cuda finds one (or its simulator is
enabled). Each line names a backend and an op family with the number of random
configurations tried; the exit status is 1 if any of them disagrees.
"""

from __future__ import annotations

import importlib.util
from typing import Callable, Iterator

import numpy as np

from .. import functional as nb
from .. import reference

Check = Callable[[np.random.Generator, Callable, Callable], None]


class Mismatch(AssertionError):
    pass


def _expect_equal(got, expected, what: str) -> None:
    if got.shape != expected.shape or not np.array_equal(got, expected, equal_nan=True):
        raise Mismatch(what)


def _expect_close(got, expected, what: str) -> None:
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=1e-5, atol=1e-6, equal_nan=True):
        raise Mismatch(what)


def _random_window(rng):
    """(x of shape (N, C, H, W), kernel, stride, padding) with padding at most half the kernel."""
    kernel = tuple(int(k) for k in rng.integers(1, 4, 2))
    stride = tuple(int(s) for s in rng.integers(1, 3, 2))
    padding = tuple(int(rng.integers(0, k // 2 + 1)) for k in kernel)
    x = rng.standard_normal((2, 3, int(rng.integers(4, 9)), int(rng.integers(4, 9)))).astype(np.float32)
    return x, kernel, stride, padding


# Each check gets ``run`` (an array on the backend under test -> back on the host)
# and ``put`` (a host array -> the backend's array), so one check serves both backends.


def check_max_pool(rng, put, run):
    x, kernel, stride, padding = _random_window(rng)
    y, indices = nb.max_pool2d(put(x), kernel, stride, padding, return_indices=True)
    expected_y, expected_indices = reference.max_pool(x, kernel, stride, padding, (1, 1), False)
    _expect_equal(run(y), expected_y, "max_pool2d values")
    _expect_equal(run(indices), expected_indices, "max_pool2d indices")
    grad = rng.standard_normal(expected_y.shape).astype(np.float32)
    got = nb.max_pool2d_backward(put(grad), indices, x.shape)
    _expect_close(run(got), reference.max_pool_backward(grad, expected_indices, x.shape[2:]), "max_pool2d_backward")


def check_avg_pool(rng, put, run):
    x, kernel, stride, padding = _random_window(rng)
    include_pad = bool(rng.random() < 0.5)
    y = nb.avg_pool2d(put(x), kernel, stride, padding, count_include_pad=include_pad)
    expected = reference.avg_pool(x, kernel, stride, padding, False, include_pad, None)
    _expect_close(run(y), expected, "avg_pool2d")
    grad = rng.standard_normal(expected.shape).astype(np.float32)
    got = nb.avg_pool2d_backward(put(grad), x.shape, kernel, stride, padding, count_include_pad=include_pad)
    expected_grad = reference.avg_pool_backward(grad, x.shape[2:], kernel, stride, padding, False, include_pad, None)
    _expect_close(run(got), expected_grad, "avg_pool2d_backward")


def check_stochastic_pool(rng, put, run):
    x, kernel, stride, padding = _random_window(rng)
    y = nb.stochastic_pool2d(put(x), kernel, stride, padding, training=False)
    _expect_close(run(y), reference.stochastic_pool_inference(x, kernel, stride, padding, False), "stochastic_pool2d inference")
    picked, indices = nb.stochastic_pool2d(put(x), kernel, stride, padding, seed=int(rng.integers(1000)), return_indices=True)
    planes = x.reshape(x.shape[0], x.shape[1], -1)
    at_indices = np.take_along_axis(planes, run(indices).reshape(planes.shape[0], planes.shape[1], -1), axis=2)
    _expect_equal(run(picked).reshape(at_indices.shape), at_indices, "stochastic_pool2d picks (values at their indices)")
    grad = rng.standard_normal(run(picked).shape).astype(np.float32)
    got = nb.stochastic_pool2d_inference_backward(put(grad), put(x), kernel, stride, padding)
    expected = reference.stochastic_pool_inference_backward(x, grad, kernel, stride, padding, False)
    _expect_close(run(got), expected, "stochastic_pool2d_inference_backward")


def check_global_pool(rng, put, run):
    x = rng.standard_normal((2, 3, int(rng.integers(2, 9)), int(rng.integers(2, 9)))).astype(np.float32)
    _expect_close(run(nb.global_avg_pool2d(put(x))), x.mean(axis=(2, 3), dtype=np.float64).astype(np.float32), "global_avg_pool2d")
    _expect_equal(run(nb.global_max_pool2d(put(x))), x.max(axis=(2, 3)), "global_max_pool2d")
    grad = rng.standard_normal(x.shape[:2]).astype(np.float32)
    expected = np.broadcast_to((grad / (x.shape[2] * x.shape[3]))[:, :, None, None], x.shape)
    _expect_close(run(nb.global_avg_pool2d_backward(put(grad), x.shape)), expected, "global_avg_pool2d_backward")


def check_adaptive_pool(rng, put, run):
    x = rng.standard_normal((2, 3, int(rng.integers(3, 9)), int(rng.integers(3, 9)))).astype(np.float32)
    size = tuple(int(n) for n in rng.integers(1, 6, 2))
    _expect_close(run(nb.adaptive_avg_pool2d(put(x), size)), reference.adaptive_avg_pool(x, size), "adaptive_avg_pool2d")
    values, indices = nb.adaptive_max_pool2d(put(x), size, return_indices=True)
    expected_values, expected_indices = reference.adaptive_max_pool(x, size)
    _expect_equal(run(values), expected_values, "adaptive_max_pool2d")
    _expect_equal(run(indices), expected_indices, "adaptive_max_pool2d indices")
    grad = rng.standard_normal(expected_values.shape).astype(np.float32)
    expected = reference.adaptive_avg_pool_backward(grad, x.shape[2:])
    _expect_close(run(nb.adaptive_avg_pool2d_backward(put(grad), x.shape)), expected, "adaptive_avg_pool2d_backward")


def check_max_unpool(rng, put, run):
    x, kernel, stride, _ = _random_window(rng)
    pooled, indices = reference.max_pool(x, kernel, stride, (0, 0), (1, 1), False)
    got = nb.max_unpool2d(put(pooled), put(indices), kernel, stride, output_size=x.shape[2:])
    _expect_equal(run(got), reference.max_unpool(pooled, indices, x.shape[2:]), "max_unpool2d")


CHECKS: dict[str, Check] = {
    "max_pool2d (values, indices, backward)": check_max_pool,
    "avg_pool2d (forward, backward)": check_avg_pool,
    "stochastic_pool2d (inference, picks, inference backward)": check_stochastic_pool,
    "global_avg/max_pool2d (forward, backward)": check_global_pool,
    "adaptive_avg/max_pool2d (forward, indices, backward)": check_adaptive_pool,
    "max_unpool2d": check_max_unpool,
}


def backends() -> Iterator[tuple[str, Callable, Callable]]:
    """(name, put, run) for the CPU and, when present, the GPU with each CUDA array family installed."""
    yield "cpu", (lambda a: a), np.asarray
    if importlib.util.find_spec("numba_cuda") is None:
        return
    from numba import cuda

    if not cuda.is_available():
        return
    yield "gpu", (lambda a: cuda.to_device(np.ascontiguousarray(a))), (lambda a: a.copy_to_host())
    from numba.cuda.core import config

    if config.ENABLE_CUDASIM:  # the simulator has numba device arrays only
        return
    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            yield "gpu (torch)", (lambda a: torch.from_numpy(np.ascontiguousarray(a)).cuda()), (lambda t: t.cpu().numpy())
    if importlib.util.find_spec("cupy") is not None:
        import cupy

        yield "gpu (cupy)", cupy.asarray, cupy.asnumpy


def run_checks(cases: int, seed: int, report=print) -> int:
    """Run every check ``cases`` times per backend; report one line per (backend, op); return the failures."""
    failures = 0
    for backend, put, run in backends():
        for name, check in CHECKS.items():
            rng = np.random.default_rng([seed, len(name)])
            problem = None
            for _ in range(cases):
                try:
                    check(rng, put, run)
                except Mismatch as mismatch:
                    problem = str(mismatch)
                    break
            failures += problem is not None
            status = "ok      " if problem is None else "MISMATCH"
            report(f"{status} {backend:4} {name}  ({cases} random cases){'' if problem is None else ': ' + problem}")
    return failures
