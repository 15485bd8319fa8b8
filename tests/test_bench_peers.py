"""The benchmark's NumPy-world peers compute the same pooling as numba_pool (so the table times equal work).

Small arrays only: correctness of the peers' formulations, no timing.
"""

from __future__ import annotations

import numpy as np
import pytest

from numba_pool import reference
from numba_pool.tools import benchmark

WINDOWS = [(2, 2), (3, 2), (3, 3), (2, 1)]
SHAPES = [(2, 3, 8, 8), (1, 2, 9, 7), (2, 1, 5, 6)]  # odd sizes: a partial last window is dropped


def oracle(op: str, x_nchw: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    window = dict(kernel=(kernel, kernel), stride=(stride, stride), padding=(0, 0), ceil_mode=False)
    if op == "max_forward":
        return reference.max_pool(x_nchw, dilation=(1, 1), **window)[0]
    return reference.avg_pool(x_nchw, count_include_pad=True, divisor_override=None, **window)


def in_layout(x_nchw: np.ndarray, channels_last: bool) -> np.ndarray:
    return np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1)) if channels_last else x_nchw


def random_input(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kernel, stride", WINDOWS)
@pytest.mark.parametrize("op", ["max_forward", "avg_forward"])
def test_scipy_filter_then_stride_equals_pooling(op, kernel, stride, shape, channels_last):
    ndimage = pytest.importorskip("scipy.ndimage")
    x = random_input(shape)
    window_filter = ndimage.maximum_filter if op == "max_forward" else ndimage.uniform_filter
    result = benchmark.filter_pool2d(in_layout(x, channels_last), kernel, stride, window_filter, channels_last)
    expected = in_layout(oracle(op, x, kernel, stride), channels_last)
    assert benchmark.same_pooled_values(op, result, expected)
    if op == "max_forward":
        np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kernel", [2, 3])
@pytest.mark.parametrize("op", ["max_forward", "avg_forward"])
def test_skimage_block_reduce_equals_non_overlapping_pooling(op, kernel, shape, channels_last):
    pytest.importorskip("skimage.measure")
    x = random_input(shape)
    reducer = np.max if op == "max_forward" else np.mean
    result = benchmark.block_reduce_pool2d(in_layout(x, channels_last), kernel, reducer, channels_last)
    expected = in_layout(oracle(op, x, kernel, kernel), channels_last)
    assert benchmark.same_pooled_values(op, result, expected)


def test_same_pooled_values_tells_max_exactly_and_averages_to_rounding():
    values = random_input((1, 1, 4, 4))
    nudged = np.nextafter(values, np.float32(np.inf))
    assert benchmark.same_pooled_values("avg_forward", nudged, values)
    assert not benchmark.same_pooled_values("max_forward", nudged, values)
    assert not benchmark.same_pooled_values("avg_forward", values + np.float32(1e-3), values)
    assert not benchmark.same_pooled_values("max_forward", values[..., :3], values)
    assert not benchmark.same_pooled_values("max_forward", values.astype(np.float64), values)


def test_a_peer_that_computes_other_values_is_left_out_of_the_timing(capsys):
    x = random_input((1, 2, 6, 6))
    expected = oracle("max_forward", x, 2, 2)
    peers = {"right": lambda: expected.copy(), "wrong": lambda: expected + np.float32(1.0)}
    timed, excluded = benchmark.checked_peers("max_forward", peers, lambda: expected)
    assert list(timed) == ["right"]
    assert list(excluded) == ["wrong"] and "largest difference 1" in excluded["wrong"]
    assert "not timed" in capsys.readouterr().err


def test_peer_columns_appear_in_the_table_only_when_some_row_timed_them():
    row = dict(label="(1, 1, 4, 4) k2s2 nchw", op="max_forward", floor_seconds=1e-6,
               seconds={"numba_pool": 2e-6, "scipy": 4e-6})
    result = dict(threads=2, threading_layer="omp", read_bandwidth_gbs=1.0, write_bandwidth_gbs=1.0, rows=[row])
    header = benchmark.format_table(result).splitlines()[1]
    assert "scipy" in header and "skimage" not in header


# --------------------------------------------------------------------------- bench/models.py on its tiny stand-in


def _models():
    pytest.importorskip("torch", reason="bench/models.py needs torch")
    from bench import models

    return models


def test_every_pooling_layer_is_swapped_for_the_numba_pool_module_with_the_same_parameters():
    models = _models()
    import numba_pool.torch as nt
    from torch import nn

    model = nn.Sequential(
        nn.MaxPool2d(3, 2, 1, ceil_mode=True), nn.Sequential(nn.AvgPool2d(3, 2, 1, count_include_pad=False)),
        nn.AdaptiveAvgPool2d((1, 1)), nn.AdaptiveAvgPool2d((7, None)), nn.MaxPool2d(2, return_indices=True),
    )
    assert models.swap_pooling(model) == ["0", "1.0", "2", "3"]
    max_pool, avg_pool, global_pool, adaptive_pool = model[0], model[1][0], model[2], model[3]
    assert isinstance(max_pool, nt.MaxPool2d) and (max_pool.layer.kernel_size, max_pool.layer.stride) == (3, 2)
    assert max_pool.layer.padding == 1 and max_pool.layer.ceil_mode
    assert isinstance(avg_pool, nt.AvgPool2d) and avg_pool.layer.count_include_pad is False
    assert isinstance(global_pool, nt.GlobalAvgPool2d) and global_pool.layer.keepdims
    assert isinstance(adaptive_pool, nt.AdaptiveAvgPool2d) and adaptive_pool.layer.output_size == (7, None)
    assert isinstance(model[4], nn.MaxPool2d)  # (values, indices) output: left to PyTorch


@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
def test_the_tiny_model_run_reports_equal_outputs_and_gradients_and_times_every_layer(memory_format):
    models = _models()
    result = models.run_model("tiny", memory_format, batch=1, size=12, repeats=1, source="builtin")
    assert result["swapped"] == ["2", "5", "6"]
    assert [d["tensor"] for d in result["differences"]][:2] == ["output", "grad input"]
    assert all(d["equal_to_rounding"] for d in result["differences"]), result["differences"]
    assert [layer["layer"] for layer in result["layers"]] == ["2", "5", "6"]
    assert result["layers"][0]["input_shape"] == [1, 8, 12, 12]
    assert result["layers"][0]["channels_last"] == (memory_format == "channels_last")
    assert set(result["seconds"]) == {"numba_pool", "torch"}
    assert "tiny (built-in)" in models.format_result(result)


def test_a_model_that_computes_something_else_is_reported_different():
    models = _models()
    import torch
    from torch import nn

    torch.manual_seed(0)
    reference = nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2))
    other = nn.Sequential(reference[0], nn.AvgPool2d(2))
    x = torch.randn(1, 3, 8, 8)
    differences = models.compare_models(other, reference, x, torch.ones(1, 4, 3, 3))
    assert not differences[0].equal_to_rounding and not differences[1].equal_to_rounding
