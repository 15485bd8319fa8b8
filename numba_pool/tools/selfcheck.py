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
from ..ops import OPS
from ..ops._checks import Mismatch

Check = Callable[..., None]

_WINDOWS = ((2, 2, 0), (3, 2, 0))  # (kernel, stride, padding) of the sliding-window ops' float16 checks


def device_cases(functions, channels_last: bool, windows, ops=None) -> dict:
    """Each op's checks (its spec's ``device_checks``) as {name: (call(x, gradient_like), "exact" or "close")}.

    The sliding-window ops (``dask="windows"``) are checked for each (kernel, stride, padding) of
    ``windows``, the others once; ``ops`` (names) narrows the ops. ``bench.gpu_check`` runs the same cases.
    """
    cases = {}
    chosen = [spec for spec in OPS if spec.device_checks is not None and (ops is None or spec.name in ops)]
    for spec in chosen:
        if spec.dask != "windows":
            cases.update(spec.device_checks(functions, channels_last))
    for kernel, stride, padding in windows:
        suffix = f"k{kernel}s{stride}" + (f" {padding}" if isinstance(padding, str) else "")
        for spec in chosen:
            if spec.dask == "windows":
                found = spec.device_checks(functions, channels_last, kernel, stride, padding)
                cases.update({f"{name} {suffix}": case for name, case in found.items()})
    return cases


def _registry_calls(functions, channels_last: bool) -> dict:
    """Every op's calls for the float16 check: {name: call(x, gradient_like)}."""
    return {name: call for name, (call, _) in device_cases(functions, channels_last, _WINDOWS).items()}


def half_precision_check(functions, rng, put, to_host) -> None:
    """Every op, forward and backward, on float16 data against the same call on the data widened to float32:
    each float16 result must be the float32 result rounded once (to nearest even), bit for bit, and indices equal.

    A call the backend refuses in float32 (a ValueError) must be refused in float16 too.
    """
    channels_last = bool(rng.random() < 0.5)
    batch, channels, height, width = 1 + int(rng.integers(2)), int(rng.integers(1, 4)), int(rng.integers(4, 7)), int(rng.integers(4, 7))
    shape = (batch, height, width, channels) if channels_last else (batch, channels, height, width)
    values = rng.standard_normal(shape) * np.where(rng.random(shape) < 0.1, 3e4, 1.0)  # some overflow to inf
    values = np.where(rng.random(shape) < 0.3, np.round(values), values)  # ties
    values[rng.random(shape) < 0.03] = np.nan
    with np.errstate(over="ignore"):
        x = values.astype(np.float16)
    gradient_seed = int(rng.integers(2**31))

    def gradient_like(dtype):
        def make(y):
            gradient = np.random.default_rng(gradient_seed).standard_normal(tuple(y.shape)).astype(np.float16)
            return put(gradient.astype(dtype))

        return make

    def results(call, data, dtype):
        result = call(put(data), gradient_like(dtype))
        return tuple(to_host(item) for item in (result if isinstance(result, tuple) else (result,)))

    for name, call in _registry_calls(functions, channels_last).items():
        try:
            wide = results(call, x.astype(np.float32), np.float32)
        except ValueError as error:
            try:
                results(call, x, np.float16)
            except ValueError as half_error:
                if str(half_error) == str(error):
                    continue
            raise Mismatch(f"{name}: float32 raised {error!r}, float16 did not raise it") from None
        for got, expected in zip(results(call, x, np.float16), wide, strict=True):
            if expected.dtype == np.float32:
                with np.errstate(over="ignore"):
                    expected = expected.astype(np.float16)
                if got.dtype != np.float16 or not np.array_equal(got.view(np.uint16), expected.view(np.uint16)):
                    raise Mismatch(f"{name} in float16 (channels_last={channels_last}): not the float32 result rounded once")
            elif not np.array_equal(got, expected):
                raise Mismatch(f"{name} in float16 (channels_last={channels_last}): other indices than in float32")

# Each op module writes its check (its spec's ``selfcheck``): ``check(nb, rng, put, run)`` gets the public
# functions, ``put`` (a host array -> the backend's array) and ``run`` (an array on the backend under test ->
# back on the host), so one check serves every backend. Ops checked with a sibling have none.
CHECKS: dict[str, Check] = {spec.selfcheck.label: spec.selfcheck.check for spec in OPS if spec.selfcheck is not None}
CHECKS["float16, every op (the float32 result rounded once)"] = half_precision_check

__all__ = ["CHECKS", "Mismatch", "backends", "device_cases", "half_precision_check", "run_checks"]


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
                    check(nb, rng, put, run)  # nb read at each call: a test may replace it
                except Mismatch as mismatch:
                    problem = str(mismatch)
                    break
            failures += problem is not None
            status = "ok      " if problem is None else "MISMATCH"
            report(f"{status} {backend:4} {name}  ({cases} random cases){'' if problem is None else ': ' + problem}")
    return failures
