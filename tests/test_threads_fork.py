"""CPU kernels under Python threads and fork, under each of Numba's threading layers.

Numba fixes its threading layer at the first parallel launch of a process, and
the failures are process deaths (SIGABRT under workqueue with threads, SIGTERM
in a child forked after GNU OpenMP ran) or hangs, so each scenario runs in a
fresh subprocess with a timeout: a crash or a hang fails the test, it does not
take the test run down. The arrays are tiny; the kernels load from Numba's
on-disk cache, so each subprocess takes a few seconds.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import numba_pool
from numba_pool.backends.cpu import _threading

# threads, fork and the threading layers: the parallel kernels, not the serial twins tests default to
pytestmark = pytest.mark.parallel_kernels

TIMEOUT_S = 240  # generous for a first compile on a busy machine; a hang still fails instead of hanging CI
LAYERS = ["tbb", "omp", "workqueue"]

# Every subprocess script starts with `work(seed)`: a few ops (forward, backward, several kernels)
# checked against plain NumPy, so a wrong result fails as surely as a crash.
_WORK = """
import os, sys, threading
import numpy as np
import numba, numba_pool
numba_pool.backends.cpu._threading.SERIAL_BELOW = 0  # these arrays are tiny: launch the thread pool all the same

def work(seed):
    x = np.random.default_rng(seed).standard_normal((2, 3, 6, 6)).astype(np.float32)
    blocks = x.reshape(2, 3, 3, 2, 3, 2)
    y, indices = numba_pool.max_pool2d(x, 2, return_indices=True)
    assert np.array_equal(y, blocks.max(axis=(3, 5))), "max_pool2d"
    grad = numba_pool.max_pool2d_backward(np.ones_like(y), indices, x.shape)
    assert grad.sum() == y.size and np.array_equal(grad != 0, x == np.repeat(np.repeat(y, 2, 2), 2, 3)), "backward"
    assert np.allclose(numba_pool.avg_pool2d(x, 2), blocks.mean(axis=(3, 5)), atol=1e-6), "avg_pool2d"
    assert np.allclose(numba_pool.global_avg_pool2d(x), x.mean(axis=(2, 3)), atol=1e-6), "global_avg_pool2d"
    return float(y.sum())
"""


def _run(script: str, layer: str | None) -> str:
    """Run ``script`` after ``_WORK`` in a fresh interpreter under ``layer`` (None: Numba's default choice)."""
    env = dict(os.environ)
    env.pop("NUMBA_THREADING_LAYER", None)
    if layer is not None:
        env["NUMBA_THREADING_LAYER"] = layer
    try:
        done = subprocess.run(
            [sys.executable, "-c", _WORK + textwrap.dedent(script)],
            env=env, capture_output=True, text=True, timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as hung:
        pytest.fail(f"hung for {TIMEOUT_S} s under layer {layer}; output so far:\n{hung.stdout}\n{hung.stderr}")
    assert done.returncode == 0, f"exit status {done.returncode} under layer {layer}:\n{done.stdout}\n{done.stderr}"
    assert done.stdout.strip().endswith("ok"), done.stdout + done.stderr
    return done.stdout


# Starting Numba's thread pool settles its threading layer, as a first parallel launch does, without
# compiling or loading a kernel (set_num_threads starts the pool first).
_START_THE_POOL = "import numba\nnumba.set_num_threads(numba.config.NUMBA_NUM_THREADS)\nprint(numba.threading_layer())"


@functools.lru_cache(maxsize=None)
def _layer_is_available(layer: str) -> bool:
    env = dict(os.environ, NUMBA_THREADING_LAYER=layer)
    done = subprocess.run([sys.executable, "-c", _START_THE_POOL], env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    if "No threading layer could be loaded" in done.stderr:
        return False
    assert done.returncode == 0 and done.stdout.split() == [layer], done.stdout + done.stderr
    return True


def _tbb_wheel_installed() -> bool:
    try:
        importlib.metadata.distribution("tbb")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.fixture(params=LAYERS)
def layer(request) -> str:
    if not _layer_is_available(request.param):
        if request.param == "tbb" and _tbb_wheel_installed():
            pytest.fail("the tbb wheel is installed but Numba cannot load its threading layer")
        pytest.skip(f"Numba's {request.param} threading layer cannot be loaded here")
    return request.param


# --------------------------------------------------------------------------- which layer


def test_numba_pool_leaves_the_default_layer_to_numba():
    """Importing numba_pool must not change which layer Numba picks by default (TBB only when asked)."""
    plain = subprocess.run(
        [sys.executable, "-c", _START_THE_POOL],
        env={k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"},
        capture_output=True, text=True, timeout=TIMEOUT_S, check=True,
    )
    output = _run("work(0); print(numba.threading_layer()); print('ok')", layer=None)
    assert output.split() == [plain.stdout.strip(), "ok"]


def test_a_thread_safe_layer_takes_the_fast_path_without_the_lock(monkeypatch):
    monkeypatch.setattr(_threading, "SERIAL_BELOW", 0)  # a parallel call, which settles the layer and the path
    numba_pool.max_pool1d(np.zeros((1, 1, 4), np.float32), 2)
    expected = _threading.active_layer() in _threading.THREAD_SAFE_LAYERS and not _threading._serial_only
    assert _threading._fast_path is expected


def test_every_cpu_kernel_is_wrapped():
    from numba_pool.backends import cpu

    kernels = list(cpu.ENTRIES)
    assert kernels and all(hasattr(getattr(cpu, name), "parallel_kernel") for name in kernels)


# --------------------------------------------------------------------------- threads


def test_eight_python_threads_calling_at_once(layer):
    output = _run(
        """
        start = threading.Barrier(8)
        failures = []

        def worker(seed):
            start.wait()  # all at once, before any launch has fixed the layer
            try:
                for i in range(20):
                    work(seed * 100 + i)
            except Exception as error:
                failures.append(repr(error))

        threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failures, failures
        print(numba.threading_layer())
        print("ok")
        """,
        layer,
    )
    assert output.split() == [layer, "ok"]


# --------------------------------------------------------------------------- fork


def test_fork_after_a_call(layer):
    _run(
        """
        expected = work(1)
        pid = os.fork()
        if pid == 0:
            try:
                code = 0 if work(1) == expected else 1
            except BaseException:
                code = 2
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child: wait status {status}"
        work(2)  # the parent still runs in parallel
        print("ok")
        """,
        layer,
    )


def test_fork_while_another_thread_calls(layer):
    """The child must not inherit a kernel lock held by a thread that does not exist in it (workqueue)."""
    _run(
        """
        import multiprocessing
        stop = threading.Event()
        work(3)  # load the kernels first: a fork while Numba's own compiler lock is held would hang in any library

        def keep_calling():
            while not stop.is_set():
                work(3)

        busy = threading.Thread(target=keep_calling)
        busy.start()
        try:
            with multiprocessing.get_context("fork").Pool(2) as pool:
                sums = pool.map(work, range(4))
        finally:
            stop.set()
            busy.join()
        assert sums == [work(seed) for seed in range(4)]
        print("ok")
        """,
        layer,
    )


def test_fork_multiprocessing_pool_after_a_call(layer):
    _run(
        """
        import multiprocessing
        expected = [work(seed) for seed in range(6)]
        with multiprocessing.get_context("fork").Pool(2) as pool:
            assert pool.map(work, range(6)) == expected
        print("ok")
        """,
        layer,
    )


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="PyTorch is not installed")
def test_torch_dataloader_with_worker_processes(layer):
    _run(
        """
        import torch

        class Pooled(torch.utils.data.Dataset):
            def __len__(self):
                return 8

            def __getitem__(self, index):
                return torch.tensor(work(index))

        expected = [work(index) for index in range(8)]  # the parent calls first, as a training script does
        loader = torch.utils.data.DataLoader(Pooled(), batch_size=4, num_workers=2, multiprocessing_context="fork", timeout=120)
        got = torch.cat(list(loader)).tolist()
        assert np.allclose(got, expected), (got, expected)
        print("ok")
        """,
        layer,
    )
