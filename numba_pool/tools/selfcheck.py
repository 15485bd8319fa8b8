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

# Each op module writes its check (its spec's ``selfcheck``): ``check(nb, rng, put, run)`` gets the public
# functions, ``put`` (a host array -> the backend's array) and ``run`` (an array on the backend under test ->
# back on the host), so one check serves every backend. Ops checked with a sibling have none.
CHECKS: dict[str, Check] = {spec.selfcheck.label: spec.selfcheck.check for spec in OPS if spec.selfcheck is not None}

__all__ = ["CHECKS", "Mismatch", "backends", "run_checks"]


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
