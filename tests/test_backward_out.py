"""out= on every backward function, and the layers' opt-in reuse of their gradient buffer.

A backward pass with ``out`` must give exactly the fresh result whatever the
memory of ``out`` (the kernel follows out's memory, and the sums run in the
same order in every layout), write every element (``out`` starts as NaN),
return ``out`` itself, and refuse an ``out`` it cannot use safely.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import numba_pool as nb
from cases import strided_view
from helpers import assert_matches, op

BACKWARDS = (
    "max", "avg", "stochastic", "stochastic_inference", "global_avg", "global_max", "adaptive_avg", "adaptive_max"
)
# How ``out`` is laid out in memory: the views of cases.py, plus the other memory format.
OUT_VIEWS = ("contiguous", "step", "reversed", "fortran", "other_format")


def backward_call(kind: str, dims: int, channels_last: bool, batched: bool, dtype=np.float32):
    """(call, input shape): ``call(**options)`` runs ``kind``'s backward on fixed arguments from a real forward."""
    rng = np.random.default_rng(dims * 10 + channels_last)
    spatial = (7,) * dims if dims < 3 else (5,) * dims
    shape = (2, *spatial, 3) if channels_last else (2, 3, *spatial)
    x = rng.standard_normal(shape).astype(dtype)
    x = x if batched else x[0]
    layout = {"channels_last": channels_last}

    def gradient_like(y):
        return rng.standard_normal(np.shape(y)).astype(dtype)

    if kind in ("max", "stochastic", "adaptive_max", "global_max"):
        if kind == "max":
            y, indices = op("max_pool", dims)(x, 3, 2, 1, return_indices=True, **layout)
        elif kind == "stochastic":
            y, indices = op("stochastic_pool", dims)(x, 2, seed=0, return_indices=True, **layout)
        elif kind == "adaptive_max":
            y, indices = op("adaptive_max_pool", dims)(x, 3, True, **layout)
        else:
            y, indices = op("global_max_pool", dims)(x, return_indices=True, **layout)
        backward = op(f"{kind}_pool", dims, "backward")
        g = gradient_like(y)
        return (lambda **options: backward(g, indices, x.shape, **layout, **options)), x.shape
    if kind == "avg":
        g = gradient_like(op("avg_pool", dims)(x, 3, 2, 1, **layout))
        backward = op("avg_pool", dims, "backward")
        return (lambda **options: backward(g, x.shape, 3, 2, 1, **layout, **options)), x.shape
    if kind == "stochastic_inference":
        g = gradient_like(op("stochastic_pool", dims)(x, 2, training=False, **layout))
        backward = op("stochastic_pool", dims, "inference_backward")
        return (lambda **options: backward(g, x, 2, **layout, **options)), x.shape
    size = () if kind == "global_avg" else (3,)  # adaptive average pooling to 3 bins per axis
    g = gradient_like(op(f"{kind}_pool", dims)(x, *size, **layout))
    backward = op(f"{kind}_pool", dims, "backward")
    return (lambda **options: backward(g, x.shape, **layout, **options)), x.shape


def poisoned_out(shape, dtype, view: str, channels_last: bool, batched: bool) -> np.ndarray:
    """A NaN-filled array of ``shape`` laid out as ``view`` says (NaN shows any element left unwritten)."""
    if view != "other_format":
        return strided_view(np.full(shape, np.nan, dtype), view)
    # Channels-first memory behind a channels-last shape, and the other way round.
    lead = 1 if batched else 0  # the batch axis stays in front
    channel_axis, other_axis = (len(shape) - 1, lead) if channels_last else (lead, len(shape) - 1)
    memory = np.full(np.moveaxis(np.empty(shape, dtype), channel_axis, other_axis).shape, np.nan, dtype)
    return np.moveaxis(memory, other_axis, channel_axis)


@pytest.mark.parametrize("kind", BACKWARDS)
@pytest.mark.parametrize("dims", (1, 2, 3))
def test_out_equals_the_fresh_result_in_every_memory_layout(kind, dims):
    for channels_last in (False, True):
        for batched in (True, False):
            call, input_shape = backward_call(kind, dims, channels_last, batched)
            fresh = call()
            for view in OUT_VIEWS:
                out = poisoned_out(input_shape, np.float32, view, channels_last, batched)
                result = call(out=out)
                assert result is out, (view, channels_last, batched)
                where = f"{kind} {dims}d {view} channels_last={channels_last} batched={batched}"
                np.testing.assert_array_equal(out, fresh, err_msg=where)
            again = call(out=out)  # a reused buffer holding the last gradient is overwritten, not added to
            np.testing.assert_array_equal(again, fresh)


def test_float64_out():
    for kind in BACKWARDS:
        call, input_shape = backward_call(kind, 2, False, True, dtype=np.float64)
        out = np.full(input_shape, np.nan)
        assert call(out=out) is out
        np.testing.assert_array_equal(out, call())


def test_out_of_the_wrong_shape_dtype_or_type_is_refused():
    for kind in BACKWARDS:
        call, input_shape = backward_call(kind, 2, False, True)
        op = f"{kind.replace('stochastic_inference', 'stochastic')}_pool2d"
        with pytest.raises(ValueError, match=rf"^{op}\w*backward: out must have shape {re.escape(str(input_shape))}"):
            call(out=np.empty(input_shape[:-1] + (input_shape[-1] + 1,), np.float32))
        dtype_message = r"backward: out must have dtype float32 \(the dtype of grad_output\); got float64"
        with pytest.raises(TypeError, match=dtype_message):
            call(out=np.empty(input_shape))
        with pytest.raises(TypeError, match="backward: out must be a plain NumPy array or None; got list"):
            call(out=np.zeros(input_shape, np.float32).tolist())


def test_read_only_and_broadcast_out_are_refused():
    call, input_shape = backward_call("avg", 2, True, True)
    read_only = np.zeros(input_shape, np.float32)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="avg_pool2d_backward: out is read-only"):
        call(out=read_only)
    broadcast = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), input_shape, (0,) * len(input_shape))
    with pytest.raises(ValueError, match="avg_pool2d_backward: out has elements that share memory"):
        call(out=broadcast)
    np.testing.assert_array_equal(read_only, 0)


def test_out_sharing_memory_with_what_the_kernel_reads_is_refused():
    # kernel 1, stride 1: grad_output has the input's shape, so it could be passed as out
    x = np.random.default_rng(3).standard_normal((1, 2, 4, 4)).astype(np.float32)
    y, indices = nb.max_pool2d(x, 1, return_indices=True)
    g = np.ones_like(y)
    with pytest.raises(ValueError, match="max_pool2d_backward: out must not share memory with grad_output"):
        nb.max_pool2d_backward(g, indices, x.shape, out=g)
    with pytest.raises(ValueError, match="avg_pool2d_backward: out must not share memory with grad_output"):
        nb.avg_pool2d_backward(g, x.shape, 1, out=g[:, :, ::-1])
    with pytest.raises(ValueError, match="stochastic_pool2d_inference_backward: out must not share memory with x"):
        nb.stochastic_pool2d_inference_backward(g, x, 1, out=x)
    as_floats = np.zeros(x.size, np.int64)  # indices whose memory out (float32) reinterprets
    index_memory = as_floats.reshape(x.shape)
    index_memory[...] = indices
    with pytest.raises(ValueError, match="max_pool2d_backward: out must not share memory with indices"):
        nb.max_pool2d_backward(g, index_memory, x.shape, out=as_floats.view(np.float32)[: x.size].reshape(x.shape))
    np.testing.assert_array_equal(g, 1)  # nothing was written
    assert np.array_equal(index_memory, indices)


def test_out_interleaved_with_grad_output_but_not_overlapping_is_accepted():
    x = np.random.default_rng(4).standard_normal((1, 1, 4, 4)).astype(np.float32)
    y, indices = nb.max_pool2d(x, 1, return_indices=True)
    buffer = np.zeros(2 * x.size, np.float32)
    g = buffer[0::2].reshape(x.shape)
    g[...] = np.arange(x.size).reshape(x.shape)
    out = buffer[1::2].reshape(x.shape)
    assert nb.max_pool2d_backward(g, indices, x.shape, out=out) is out
    np.testing.assert_array_equal(out, nb.max_pool2d_backward(g.copy(), indices, x.shape))


def test_dask_backward_refuses_out_and_runs_without_it():
    da = pytest.importorskip("dask.array")
    x = np.random.default_rng(5).standard_normal((2, 3, 8, 8)).astype(np.float32)
    g = da.from_array(np.ones((2, 3, 4, 4), np.float32), chunks=(1, 3, 4, 4))
    expected = nb.avg_pool2d_backward(np.ones((2, 3, 4, 4), np.float32), x.shape, 2)
    np.testing.assert_array_equal(nb.avg_pool2d_backward(g, x.shape, 2).compute(), expected)
    with pytest.raises(TypeError, match="out= is not supported with dask arrays"):
        nb.avg_pool2d_backward(g, x.shape, 2, out=np.empty(x.shape, np.float32))


# --------------------------------------------------------------------------- layers


def layer_cases():
    """(layer factory, input) for one layer of each kind."""
    x = np.random.default_rng(6).standard_normal((2, 3, 6, 6)).astype(np.float32)
    return {
        "MaxPool2d": (lambda **o: nb.MaxPool2d(3, 2, 1, **o), x),
        "AvgPool2d": (lambda **o: nb.AvgPool2d(2, **o), x),
        "StochasticPool2d": (lambda **o: nb.StochasticPool2d(2, seed=0, **o), x),
        "StochasticPool2d eval": (lambda **o: nb.StochasticPool2d(2, **o).eval(), x),
        "GlobalAvgPool2d": (lambda **o: nb.GlobalAvgPool2d(**o), x),
        "GlobalMaxPool2d": (lambda **o: nb.GlobalMaxPool2d(**o), x),
        "AdaptiveAvgPool2d": (lambda **o: nb.AdaptiveAvgPool2d(4, **o), x),
        "AdaptiveMaxPool2d": (lambda **o: nb.AdaptiveMaxPool2d(4, **o), x),
    }


@pytest.mark.parametrize("name", list(layer_cases()))
def test_layers_reuse_their_gradient_array_only_when_asked(name):
    make, x = layer_cases()[name]
    rng = np.random.default_rng(7)
    reusing, fresh = make(reuse_buffers=True), make()
    gradients = []
    for step in range(3):
        y = reusing(x)
        fresh(x)
        g = rng.standard_normal(y.shape).astype(np.float32)
        result = reusing.backward(g)
        np.testing.assert_array_equal(result, fresh.backward(g))
        gradients.append(result)
    assert gradients[0] is gradients[1] is gradients[2], "the same array each step"
    plain = make()
    plain(x)
    g = np.ones(y.shape, np.float32)
    assert plain.backward(g) is not plain.backward(g), "no reuse by default"


def test_layer_takes_a_fresh_array_when_shape_dtype_or_memory_changes():
    pool = nb.AvgPool2d(2, reuse_buffers=True)
    x = np.random.default_rng(8).standard_normal((2, 3, 6, 6)).astype(np.float32)
    first = pool.backward(np.ones(pool(x).shape, np.float32))
    assert pool.backward(np.ones((2, 3, 3, 3), np.float32)) is first
    pool(x[:1])
    smaller = pool.backward(np.ones((1, 3, 3, 3), np.float32))  # another input shape
    assert smaller is not first and smaller.shape == (1, 3, 6, 6)
    pool(x[:1].astype(np.float64))
    assert pool.backward(np.ones((1, 3, 3, 3))).dtype == np.float64  # another dtype
    pool(x[:1])
    channels_last_memory = np.moveaxis(np.ones((1, 3, 3, 3), np.float32), 1, -1).copy()
    result = pool.backward(np.moveaxis(channels_last_memory, -1, 1))  # another memory format follows grad_output
    assert result.strides == np.moveaxis(np.empty((1, 6, 6, 3), np.float32), -1, 1).strides
    np.testing.assert_array_equal(result, 0.25)


def test_layer_does_not_overwrite_a_gradient_passed_back_in():
    pool = nb.MaxPool2d(1, reuse_buffers=True)  # kernel 1: the gradient has the input's shape
    x = np.random.default_rng(9).standard_normal((1, 2, 4, 4)).astype(np.float32)
    pool(x)
    first = pool.backward(np.full(x.shape, 2, np.float32))
    second = pool.backward(first)  # reading first while writing into it would be wrong
    assert second is not first
    np.testing.assert_array_equal(second, 2)
    np.testing.assert_array_equal(first, 2)


def test_reuse_buffers_must_be_a_bool():
    with pytest.raises(TypeError, match="MaxPool2d: reuse_buffers must be True or False; got 1"):
        nb.MaxPool2d(2, reuse_buffers=1)


# --------------------------------------------------------------------------- CUDA (the simulator without a GPU)


def test_backward_out_on_the_device():
    pytest.importorskip("numba_cuda", reason="needs numba-cuda")
    from numba import cuda

    x = np.random.default_rng(10).standard_normal((1, 2, 4, 4)).astype(np.float32)
    y, indices = nb.max_pool2d(x, 2, return_indices=True)
    g = np.random.default_rng(11).standard_normal(y.shape).astype(np.float32)
    device_g, device_indices, device_x = cuda.to_device(g), cuda.to_device(indices), cuda.to_device(x)
    calls = {
        "max": (
            lambda **o: nb.max_pool2d_backward(device_g, device_indices, x.shape, **o),
            nb.max_pool2d_backward(g, indices, x.shape),
        ),
        "avg": (lambda **o: nb.avg_pool2d_backward(device_g, x.shape, 2, **o), nb.avg_pool2d_backward(g, x.shape, 2)),
        "inference": (
            lambda **o: nb.stochastic_pool2d_inference_backward(device_g, device_x, 2, **o),
            nb.stochastic_pool2d_inference_backward(g, x, 2),
        ),
    }
    for name, (call, expected) in calls.items():
        out = cuda.to_device(np.full(x.shape, np.nan, np.float32))
        assert call(out=out) is out, name
        assert_matches(out.copy_to_host(), expected, err_msg=name)
    with pytest.raises(ValueError, match="stochastic_pool2d_inference_backward: out must not share memory with x"):
        nb.stochastic_pool2d_inference_backward(device_g, device_x, 2, out=device_x)
    with pytest.raises(TypeError, match="out must have dtype float32 \\(the dtype of grad_output\\)"):
        nb.avg_pool2d_backward(device_g, x.shape, 2, out=cuda.device_array(x.shape, np.float64))
    with pytest.raises(TypeError, match=r"grad_output is on the GPU .* out is on the host"):
        nb.avg_pool2d_backward(device_g, x.shape, 2, out=np.empty(x.shape, np.float32))
