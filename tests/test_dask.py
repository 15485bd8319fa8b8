"""numba_pool on dask arrays: lazy results equal to the NumPy results, bit for bit, for any chunking."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

da = pytest.importorskip("dask.array", reason="the dask adapter needs dask (pip install -e '.[test]' installs it)")

import numba_pool as nb  # noqa: E402
from numba_pool.dask import pyramid  # noqa: E402
from cases import random_case, random_values  # noqa: E402
from helpers import op  # noqa: E402


def random_chunks(rng, shape):
    """Chunks of random sizes along every axis (often splitting windows between chunks)."""
    chunks = []
    for length in shape:
        if length == 0:
            chunks.append((0,))
            continue
        edges = sorted(set(rng.integers(1, length, size=int(rng.integers(0, 3))).tolist())) if length > 1 else []
        bounds = [0, *edges, length]
        chunks.append(tuple(b - a for a, b in zip(bounds[:-1], bounds[1:])))
    return tuple(chunks)


def lazy(rng, array):
    return da.from_array(array, chunks=random_chunks(rng, array.shape))


def assert_lazy_equal(lazy_result, expected):
    pairs = zip(lazy_result, expected) if isinstance(expected, tuple) else [(lazy_result, expected)]
    for got, want in pairs:
        assert isinstance(got, da.Array)
        assert got.shape == want.shape and got.dtype == want.dtype
        assert tuple(map(sum, got.chunks)) == want.shape
        computed = got.compute()
        assert computed.dtype == want.dtype
        np.testing.assert_array_equal(computed, want)


# Blocks reach the kernels as views (Numba's layout "A"): float32 only, as cases.FLOAT64_VIEWS.
DTYPES = (np.float32,)


def user_array(rng, case, special=True):
    return random_values(rng, case.user_shape(case.spatial), case.dtype, special=special)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", range(8))
def test_sliding_window_forwards_equal_numpy_for_any_chunks(dims, seed):
    rng = np.random.default_rng([dims, seed])
    case = random_case(rng, dims, dtypes=DTYPES)
    x = np.ascontiguousarray(user_array(rng, case))
    window = dict(kernel_size=case.kernel, stride=case.stride, padding=case.padding, ceil_mode=case.ceil_mode,
                  channels_last=case.channels_last)
    maximum = op("max_pool", dims)
    assert_lazy_equal(maximum(lazy(rng, x), dilation=case.dilation, return_indices=True, **window),
                      maximum(x, dilation=case.dilation, return_indices=True, **window))
    if case.dilation == (1,) * dims:
        average = op("avg_pool", dims)
        options = dict(window, count_include_pad=case.count_include_pad, divisor_override=case.divisor_override)
        assert_lazy_equal(average(lazy(rng, x), **options), average(x, **options))
        stochastic = op("stochastic_pool", dims)
        assert_lazy_equal(stochastic(lazy(rng, x), seed=seed, return_indices=True, **window),
                          stochastic(x, seed=seed, return_indices=True, **window))
        assert_lazy_equal(stochastic(lazy(rng, x), training=False, **window), stochastic(x, training=False, **window))


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", range(4))
def test_backward_passes_equal_numpy(dims, seed):
    rng = np.random.default_rng([10 + dims, seed])
    case = random_case(rng, dims, dilation=False, dtypes=DTYPES)
    x = np.ascontiguousarray(user_array(rng, case, special=False))
    options = dict(channels_last=case.channels_last)
    window = dict(kernel_size=case.kernel, stride=case.stride, padding=case.padding, ceil_mode=case.ceil_mode)
    y, indices = op("max_pool", dims)(x, return_indices=True, **window, **options)
    grad = random_values(rng, y.shape, x.dtype, special=False)
    backward = op("max_pool", dims, "backward")
    assert_lazy_equal(backward(lazy(rng, grad), lazy(rng, indices), x.shape, **options), backward(grad, indices, x.shape, **options))
    average = op("avg_pool", dims, "backward")
    assert_lazy_equal(average(lazy(rng, grad), x.shape, **window, **options), average(grad, x.shape, **window, **options))
    inference = op("stochastic_pool", dims, "inference_backward")
    assert_lazy_equal(inference(lazy(rng, grad), lazy(rng, x), **window, **options), inference(grad, x, **window, **options))


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_global_adaptive_and_unpool_equal_numpy(dims):
    rng = np.random.default_rng(20 + dims)
    case = random_case(rng, dims, dilation=False, dtypes=DTYPES)
    x = np.ascontiguousarray(user_array(rng, case, special=False))
    options = dict(channels_last=case.channels_last)
    for keepdims in (False, True):
        mean = op("global_avg_pool", dims)
        assert_lazy_equal(mean(lazy(rng, x), keepdims, **options), mean(x, keepdims, **options))
        maximum = op("global_max_pool", dims)
        assert_lazy_equal(maximum(lazy(rng, x), keepdims, True, **options), maximum(x, keepdims, True, **options))
    size = tuple(int(n) for n in rng.integers(1, 5, dims))
    for kind in ("avg", "max"):
        adaptive = op(f"adaptive_{kind}_pool", dims)
        assert_lazy_equal(adaptive(lazy(rng, x), size, **options), adaptive(x, size, **options))
    pooled = op("adaptive_avg_pool", dims)(x, size, **options)
    backward = op("adaptive_avg_pool", dims, "backward")
    assert_lazy_equal(backward(lazy(rng, pooled), x.shape, **options), backward(pooled, x.shape, **options))
    kernel = tuple(min(k, n) for k, n in zip(case.kernel, case.spatial))
    values, indices = op("max_pool", dims)(x, kernel, return_indices=True, **options)
    unpool = op("max_unpool", dims)
    assert_lazy_equal(unpool(lazy(rng, values), lazy(rng, indices), kernel, output_size=case.spatial, **options),
                      unpool(values, indices, kernel, output_size=case.spatial, **options))


def test_errors_come_before_any_block_runs():
    x = da.ones((2, 3, 8, 8), chunks=(1, 1, 4, 4))
    with pytest.raises(ValueError, match="padding must be at most half the kernel size"):
        nb.avg_pool2d(x, 2, padding=2)
    with pytest.raises(TypeError, match="accepted dtypes are float16, float32 or float64"):
        nb.avg_pool2d(x.astype(np.int32), 2)
    with pytest.raises(TypeError, match="out= is not supported with dask arrays"):
        nb.max_pool2d(x, 2, out=np.empty((2, 3, 4, 4)))
    with pytest.raises(ValueError, match=r"x must have shape \(N, C, H, W\) or unbatched \(C, H, W\)"):
        nb.max_pool2d(x[None], 2)
    with pytest.raises(ValueError, match="grad_output of shape"):
        nb.max_pool2d_backward(x, x.astype(np.int64), (2, 4, 8, 8))


def test_arrays_passed_by_keyword_stay_lazy():
    x = np.random.default_rng(3).random((2, 3, 9, 8), np.float32)
    lazy_x = da.from_array(x, chunks=(1, 2, 4, 5))
    assert_lazy_equal(nb.max_pool2d(x=lazy_x, kernel_size=3, stride=2), nb.max_pool2d(x, 3, 2))
    assert_lazy_equal(nb.global_avg_pool2d(x=lazy_x), nb.global_avg_pool2d(x))
    grad = nb.avg_pool2d(x, 2)
    assert_lazy_equal(nb.avg_pool2d_backward(grad_output=da.from_array(grad, chunks=(1, 1, 2, 2)), input_shape=x.shape,
                                             kernel_size=2), nb.avg_pool2d_backward(grad, x.shape, 2))
    inference = nb.stochastic_pool2d_inference_backward  # takes both; only x= is a dask array here
    assert_lazy_equal(inference(grad_output=grad, x=lazy_x, kernel_size=2), inference(grad, x, 2))


@pytest.mark.parametrize("name", ["max_pool2d", "avg_pool2d_backward", "global_max_pool2d"])
def test_unknown_chunk_sizes_are_refused_with_the_fix(name):
    x = da.from_array(np.ones((4, 2, 8, 8)), chunks=(2, 1, 4, 4))
    unknown = x[x[:, 0, 0, 0] > 0]  # boolean indexing: the batch chunk sizes are unknown (NaN)
    arguments = {"max_pool2d": (2,), "avg_pool2d_backward": ((4, 2, 16, 16), 2), "global_max_pool2d": ()}[name]
    with pytest.raises(ValueError, match=rf"^{name}: .* unknown chunk sizes .*compute_chunk_sizes\(\)"):
        getattr(nb, name)(unknown, *arguments)
    known = unknown.compute_chunk_sizes()
    assert isinstance(getattr(nb, name)(known, *arguments), da.Array)


def test_a_generator_seed_is_drawn_once_for_all_blocks_and_not_by_a_refused_call():
    x = np.random.default_rng(0).random((2, 2, 9, 9))
    generator = np.random.default_rng(5)
    with pytest.raises(ValueError, match="padding must be at most half"):
        nb.stochastic_pool2d(da.from_array(x), 3, 2, padding=2, seed=generator)
    lazy_result = nb.stochastic_pool2d(da.from_array(x, chunks=(1, 1, 4, 4)), 3, 2, seed=generator)
    np.testing.assert_array_equal(lazy_result.compute(), nb.stochastic_pool2d(x, 3, 2, seed=np.random.default_rng(5)))


def test_pyramid():
    rng = np.random.default_rng(1)
    x = rng.random((2, 3, 32, 24), dtype=np.float32)
    levels = pyramid(da.from_array(x, chunks=(1, 2, 10, 7)), 3)
    assert [level.shape for level in levels] == [(2, 3, 32, 24), (2, 3, 16, 12), (2, 3, 8, 6), (2, 3, 4, 3)]
    expected = x
    for level in levels[1:]:
        expected = nb.avg_pool2d(expected, 2)
        np.testing.assert_array_equal(level.compute(), expected)
    maxima = pyramid(np.moveaxis(x, 1, -1), 2, "max", kernel_size=3, stride=2, channels_last=True)
    np.testing.assert_array_equal(maxima[2].compute(), nb.max_pool2d(nb.max_pool2d(np.moveaxis(x, 1, -1), 3, 2, channels_last=True), 3, 2, channels_last=True))
    with pytest.raises(ValueError, match="method must be 'avg' or 'max'"):
        pyramid(x, 2, "median")
    with pytest.raises(ValueError, match="output would be empty"):
        pyramid(x, 6)


def test_on_a_local_cluster_of_processes():
    distributed = pytest.importorskip("distributed")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 3, 20, 18)).astype(np.float32)
    lazy_x = da.from_array(x, chunks=(2, 2, 7, 9))
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=2, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster, distributed.Client(cluster) as client:
        y, indices = nb.max_pool2d(lazy_x, 3, 2, 1, return_indices=True)
        futures = client.compute(
            [y, indices, nb.avg_pool2d(lazy_x, 3, 2, 1), nb.max_pool2d_backward(y, indices, x.shape), pyramid(lazy_x, 2)[2]]
        )
        distributed.wait(futures, timeout=600)  # a dead worker fails the test instead of hanging the suite
        results = client.gather(futures)
    expected_y, expected_indices = nb.max_pool2d(x, 3, 2, 1, return_indices=True)
    np.testing.assert_array_equal(results[0], expected_y)
    np.testing.assert_array_equal(results[1], expected_indices)
    np.testing.assert_array_equal(results[2], nb.avg_pool2d(x, 3, 2, 1))
    np.testing.assert_array_equal(results[3], nb.max_pool2d_backward(expected_y, expected_indices, x.shape))
    np.testing.assert_array_equal(results[4], nb.avg_pool2d(nb.avg_pool2d(x, 2), 2))


def test_workqueue_threading_layer_in_threaded_workers():
    """Numba's workqueue layer aborts on concurrent parallel kernels; dask's threads must not trigger that."""
    code = """
import numba, numpy as np, dask, dask.array as da, numba_pool as nb
nb.backends.cpu._threading.SERIAL_BELOW = 0  # the blocks are small: launch the thread pool all the same
x = np.random.default_rng(0).random((8, 8, 64, 64)).astype(np.float32)
lazy = da.from_array(x, chunks=(1, 2, 64, 64))  # whole planes: the kernel types other tests compile
with dask.config.set(scheduler="threads", num_workers=4):
    got = nb.max_pool2d(lazy, 3, 2, 1).compute()
assert numba.threading_layer() == "workqueue", numba.threading_layer()
assert np.array_equal(got, nb.max_pool2d(x, 3, 2, 1))
print("ok")
"""
    environment = dict(os.environ, NUMBA_THREADING_LAYER="workqueue")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=environment)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "ok"


def _new_layers(result, source):
    """The graph layers an op added on top of ``source``'s, with their task counts."""
    layers = result.dask.layers
    return {name: len(layer) for name, layer in layers.items() if name not in source.dask.layers}


def test_building_the_graph_for_many_chunks_reads_no_data_and_adds_one_task_per_block():
    touched = []

    def touch(block):
        touched.append(block.shape)
        return block

    x = da.zeros((1, 2, 64, 64), chunks=(1, 1, 2, 2)).map_blocks(touch, meta=np.empty((0, 0, 0, 0)))
    assert x.npartitions == 2048
    values, indices = nb.max_pool2d(x, 3, 2, 1, return_indices=True)
    assert values.numblocks == indices.numblocks == x.numblocks  # each input chunk edge starts an output block
    values_layers, indices_layers = _new_layers(values, x), _new_layers(indices, x)
    # one task per output block computes both outputs; each output picks its part of them
    assert len(values_layers) == len(indices_layers) == 2 and len(values_layers.keys() & indices_layers.keys()) == 1
    assert set(values_layers.values()) == set(indices_layers.values()) == {values.npartitions}
    for result in (nb.avg_pool2d(x, 2), nb.stochastic_pool2d(x, 3, 2, seed=1)):
        assert _new_layers(result, x) == {result.name: result.npartitions}
    for result in (nb.global_avg_pool2d(x), nb.max_pool2d_backward(values, indices, x.shape)):  # after a rechunk
        assert result.numblocks[:2] == (1, 2) and len(result.dask.layers[result.name]) == 2
    assert touched == []


@pytest.mark.parametrize("channels_last", [False, True])
def test_windows_spanning_many_one_element_chunks_equal_numpy(channels_last):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 12, 11, 3) if channels_last else (2, 3, 12, 11)).astype(np.float32)
    lazy_x = da.from_array(x, chunks=1)  # 792 chunks; a 3x3 window reads up to 9 of them
    options = dict(channels_last=channels_last)
    assert_lazy_equal(nb.max_pool2d(lazy_x, 3, 2, 1, return_indices=True, **options),
                      nb.max_pool2d(x, 3, 2, 1, return_indices=True, **options))
    assert_lazy_equal(nb.avg_pool2d(lazy_x, 3, 2, 1, **options), nb.avg_pool2d(x, 3, 2, 1, **options))
    assert_lazy_equal(nb.stochastic_pool2d(lazy_x, 3, 1, seed=7, return_indices=True, **options),
                      nb.stochastic_pool2d(x, 3, 1, seed=7, return_indices=True, **options))
    assert_lazy_equal(nb.global_max_pool2d(lazy_x, **options), nb.global_max_pool2d(x, **options))
