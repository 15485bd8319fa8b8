"""Max pooling's scratch memory: bounded whatever the row length, allocated outside the compiled
kernels (so a failed allocation is a MemoryError), and long rows cut into tiles still exact."""

import os
import sys
import subprocess
import textwrap
import tracemalloc

import numba
import numpy as np
import pytest

import numba_pool as nb
from numba_pool import reference
from numba_pool.backends.cpu import max_pool as cpu_max_pool
from cases import nan_heavy_values, random_case
from helpers import op

LONG = 2**24  # float32 elements of the long test rows (64 MiB): enough to see, small for a shared machine


def scratch_bound(itemsize: int) -> int:
    """The most scratch bytes the CPU max kernel may take: one tile of values and int64 keys per block."""
    blocks = 8 * numba.config.NUMBA_NUM_THREADS  # the most blocks cpu._common.row_blocks gives
    return blocks * cpu_max_pool.TILE_COLUMNS * (itemsize + 8)


def traced_peak(call, repeats: int = 3) -> int:
    """Peak bytes NumPy allocated (tracemalloc sees NumPy's allocations) while ``call`` ran: the least
    of a few runs, because tracemalloc also counts what other threads allocate meanwhile (pytest-xdist's
    messaging thread added 18 KiB once). Scratch that grew with the input would show in every run."""
    peaks = []
    for _ in range(repeats):
        tracemalloc.start()
        try:
            call()
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    return min(peaks)


def test_scratch_does_not_grow_with_the_row_length():
    short = np.random.default_rng(0).standard_normal((1, 1, 2**16)).astype(np.float32)
    long = np.resize(short, (1, 1, LONG))
    nb.global_max_pool1d(short)  # compiled (or loaded) before measuring
    nb.max_pool1d(short, 3, 2, return_indices=True)  # its own (direct) kernel
    peaks = [traced_peak(lambda x=x: nb.global_max_pool1d(x, return_indices=True)) for x in (short, long)]
    assert peaks[1] <= scratch_bound(4) + 64 * 1024
    assert peaks[1] <= peaks[0] + 4096  # independent of the length
    pooled_bytes = (LONG // 2) * (4 + 8)  # values and indices of max_pool1d(x, 3, 2)
    peak = traced_peak(lambda: nb.max_pool1d(long, 3, 2, return_indices=True))
    assert peak - pooled_bytes <= scratch_bound(4) + 64 * 1024


def _peak_resident_bytes_during(call) -> int:
    """How far the process's peak resident memory rose above its resident memory while ``call`` ran
    (Linux: VmHWM reset through /proc/self/clear_refs); sees allocations inside compiled kernels too."""

    def kilobytes(field):
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))

    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    before = kilobytes("VmRSS")
    call()
    return (kilobytes("VmHWM") - before) * 1024


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux's peak-RSS reset")
def test_compiled_kernel_allocates_no_row_sized_buffers(monkeypatch):
    """Allocations inside the compiled kernel are invisible to tracemalloc; the resident peak sees them.
    Before the fix, the global max of a 2**24-element float32 row took 192 MiB of scratch."""
    x = np.random.default_rng(1).standard_normal((1, 1, LONG)).astype(np.float32)
    monkeypatch.setattr(nb.backends.cpu._threading, "SERIAL_BELOW", 0)  # the parallel kernel, as the long row runs it
    nb.global_max_pool1d(x[..., :100])  # compiled (or loaded) before measuring
    rise = _peak_resident_bytes_during(lambda: nb.global_max_pool1d(x, return_indices=True))
    assert rise < 32 * 2**20


@pytest.mark.skipif(sys.platform != "linux", reason="address-space limits as Linux applies them")
def test_memory_limits_give_memory_error_not_system_error():
    """Under an address-space limit a little above the input, the global max still runs (its scratch is
    small), and an allocation that does not fit is a MemoryError (it used to be a SystemError raised
    from inside the parallel kernel)."""
    script = textwrap.dedent(
        """
        import resource
        import numpy as np
        import numba_pool as nb

        x = np.ones((1, 1, 2**24), np.uint8)
        x[0, 0, 12345] = 7
        nb.backends.cpu._threading.SERIAL_BELOW = 0  # warm the parallel kernels the large calls below run
        nb.global_max_pool1d(x[..., :100], return_indices=True)  # threads and compiled code first
        nb.max_pool1d(x[..., :100], 3)
        with open("/proc/self/status") as status:
            size = next(int(line.split()[1]) for line in status if line.startswith("VmSize:")) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (size + 64 * 2**20, resource.RLIM_INFINITY))
        value, index = nb.global_max_pool1d(x, return_indices=True)
        assert value[0, 0] == 7 and index[0, 0] == 12345, (value, index)
        try:
            nb.max_pool1d(x, 1, return_indices=True)  # 128 MiB of indices: cannot fit
        except MemoryError:
            print("MemoryError")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "MemoryError"


def _assert_matches_reference(x, kernel, stride, padding, dilation, ceil_mode):
    dims = x.ndim - 2
    expected, expected_indices = reference.max_pool(x, kernel, stride, padding, dilation, ceil_mode)
    pool = op("max_pool", dims)
    values, indices = pool(x, kernel, stride, padding, dilation, ceil_mode, return_indices=True)
    np.testing.assert_array_equal(values, expected)
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_array_equal(pool(x, kernel, stride, padding, dilation, ceil_mode), expected)


@pytest.mark.parametrize("tile_columns", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_small_tiles_match_reference(monkeypatch, tile_columns, dims):
    """Tiny tiles make every row cross tile borders and many windows wider than a tile (chunked)."""
    # The serial twins run these small calls, through a copy of the module's globals made at its first
    # small call (see _threading._serial_namespace): the copy needs the tile width too. The parallel
    # kernels run the same code (tests/test_small_work.py), so compiling them for every dtype and
    # layout drawn here would add minutes to a cold run and nothing to what it checks.
    namespace = nb.backends.cpu._threading._serial_namespace(cpu_max_pool.__name__)  # copied before the patch below
    monkeypatch.setattr(cpu_max_pool, "TILE_COLUMNS", tile_columns)
    monkeypatch.setitem(namespace, "TILE_COLUMNS", tile_columns)
    rng = np.random.default_rng([tile_columns, dims])
    for _ in range(12):
        case = random_case(rng, dims)
        x = nan_heavy_values(rng, (case.batch, case.channels) + case.spatial, case.dtype)
        if rng.random() < 0.3:
            x = np.round(rng.standard_normal(x.shape)).astype(case.dtype)  # ties only
        _assert_matches_reference(x, case.kernel, case.stride, case.padding, case.dilation, case.ceil_mode)
        whole = case.spatial
        _assert_matches_reference(x, whole, whole, (0,) * dims, (1,) * dims, False)  # global max


@pytest.mark.parametrize(
    "kernel, stride, padding, dilation, ceil_mode",
    [
        (3, 2, 1, 1, False),
        (4, 3, 2, 1, True),
        (3, 1, 1, 3, False),
        (5, 5, 2, 1, True),
        (3000, 700, 0, 1, True),  # windows wider than a tile
        (1100, 900, 0, 2, False),  # dilated windows wider than a tile
    ],
)
def test_long_rows_across_tiles_match_reference(kernel, stride, padding, dilation, ceil_mode):
    rng = np.random.default_rng(kernel)
    x = nan_heavy_values(rng, (2, 1, 3 * cpu_max_pool.TILE_COLUMNS + 77))
    x[1, 0] = np.round(x[1, 0] / 4)  # row 1: a few NaNs, long runs of ties
    x[1, 0, np.isnan(x[1, 0])] = 0
    x[1, 0, ::500] = np.nan
    _assert_matches_reference(x, (kernel,), (stride,), (padding,), (dilation,), ceil_mode)
    plane = nan_heavy_values(rng, (1, 2, 3, 2 * cpu_max_pool.TILE_COLUMNS + 5), np.float32)
    _assert_matches_reference(plane, (2, kernel), (1, stride), (0, padding), (1, dilation), ceil_mode)


def test_global_max_of_long_rows_matches_reference():
    rng = np.random.default_rng(7)
    width = 2 * cpu_max_pool.TILE_COLUMNS + 3
    x = np.round(rng.standard_normal((5, 2, width)) * 3)
    x[1, :, :] = 2.0  # all ties: the first element wins
    x[2, :, [5, 3000, width - 1]] = np.nan  # several NaNs across chunks: the last wins
    x[3, :, [0, 2049]] = np.nan
    x[4, :, :] = np.nan
    for dtype in (np.float32, np.float64):
        values, indices = nb.global_max_pool1d(x.astype(dtype), return_indices=True)
        expected, expected_indices = reference.max_pool(x.astype(dtype), (width,), (width,), (0,), (1,), False)
        np.testing.assert_array_equal(values, expected[..., 0])
        np.testing.assert_array_equal(indices, expected_indices[..., 0])
    assert indices[1, 0] == 0 and indices[2, 0] == width - 1 and indices[3, 0] == 2049 and indices[4, 0] == width - 1
    planes = nan_heavy_values(rng, (2, 3, 4, width))
    values, indices = nb.global_max_pool2d(planes, return_indices=True)
    expected, expected_indices = reference.max_pool(planes, (4, width), (4, width), (0, 0), (1, 1), False)
    np.testing.assert_array_equal(values, expected[..., 0, 0])
    np.testing.assert_array_equal(indices, expected_indices[..., 0, 0])

