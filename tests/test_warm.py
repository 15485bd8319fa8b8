"""``numba-pool warm``: after it, a new process makes the warmed calls without compiling anything."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import numba_pool as nb
from numba_pool.tools import warm as warming

# A model's calls of the warmed op in a fresh process: small (serial twins) and large (parallel kernels) arrays, both layouts.
# Prints how many functions Numba compiled for the warmed calls, then for a call of a dtype not warmed.
MODEL_CALLS = textwrap.dedent(
    """
    import numba.core.event as event
    import numpy as np
    import numba_pool as nb

    compiled = []

    class Listener(event.Listener):
        def on_start(self, ev):
            compiled.append(getattr(ev.data.get("dispatcher"), "__qualname__", "?"))

        def on_end(self, ev):
            pass

    event.register("numba:compile", Listener())
    for length in (10, 50_000):
        for channels_last in (False, True):
            shape = (2, length, 3) if channels_last else (2, 3, length)
            x = np.random.default_rng(0).standard_normal(shape)
            y = nb.global_avg_pool1d(x, channels_last=channels_last)
            nb.global_avg_pool1d_backward(np.ones_like(y), x.shape, channels_last=channels_last)
    print("warmed calls compiled:", sorted(set(compiled)))
    compiled.clear()
    nb.global_avg_pool1d(np.ones((1, 1, 8), np.float32))
    print("a float32 call compiled:", len(compiled))
    """
)


def _run(code_or_args, cache_dir):
    environment = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    command = [sys.executable, *code_or_args] if isinstance(code_or_args, list) else [sys.executable, "-c", code_or_args]
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_after_warm_a_new_process_compiles_nothing_for_the_warmed_calls(tmp_path):
    """One op (a cold compile into an empty cache costs tens of seconds per op); the hooks of the others
    run in test_every_op_has_a_warm_hook_and_the_package_exports_warm."""
    arguments = ["-m", "numba_pool", "warm", "--ops", "global_avg_pool", "--dims", "1", "--dtypes", "float64"]
    report = _run(arguments, tmp_path)
    assert report.count("warmed  ") == 2 and "warmed in" in report, report
    assert any(tmp_path.rglob("*.nbi")), "the cache went to NUMBA_CACHE_DIR"
    output = _run(MODEL_CALLS, tmp_path)
    assert "warmed calls compiled: []" in output, output
    assert "a float32 call compiled: 0" not in output, output  # the listener sees compiles: the check can fail


@pytest.fixture
def serial_pass_only(monkeypatch):
    """Each hook runs once, on the serial twins. Its parallel pass is the same hook with every call on
    the parallel kernels: test_after_warm... checks that pass for one op, and test_small_work.py runs
    every op's parallel kernels (a first run would compile most of them a second time here, about 30 s)."""

    def run_once(hook, dims, x, channels_last):
        hook(nb.functional, dims, x, channels_last)

    monkeypatch.setattr(warming, "_run_both_ways", run_once)


def test_ops_that_do_not_take_a_dtype_are_skipped_and_said_so(serial_pass_only):
    # The skip rule only (the parallel pass of int64 max pooling would be tens of seconds of compiling)
    lines = []
    warming.warm(["avg_pool", "max_pool"], dtypes=["int64"], dims=[1], layouts=["nchw"], report=lines.append)
    assert lines[0].startswith("skipped avg_pool 1-D int64 nchw") and lines[1].startswith("warmed  max_pool 1-D int64")


@pytest.mark.parametrize(
    "options, message",
    [
        ({"ops": ["max_pol"]}, "ops must be among max_pool, avg_pool"),
        ({"dims": [4]}, "dims must be among 1, 2, 3"),
        ({"layouts": ["nhcw"]}, "layouts must be among nchw, nhwc"),
    ],
)
def test_bad_arguments_name_what_is_accepted(options, message):
    with pytest.raises(ValueError, match=message):
        warming.warm(**options)


def test_every_op_has_a_warm_hook_and_the_package_exports_warm(serial_pass_only):
    assert sorted(warming.warmable_ops()) == sorted(spec.name for spec in nb.ops.OPS)
    assert nb.warm is warming.warm
    assert np.isfinite(nb.warm(dims=[1, 2]))  # every op's hook runs
