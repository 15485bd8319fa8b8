"""pytest-benchmark suite: every op, forward and backward, both layouts, float32 and float64.

Run it on its own (it is not part of the default test run):

    pip install -e ".[bench]"
    pytest bench/ --benchmark-columns=median,iqr,ops

Shapes are moderate so the whole suite takes a few minutes; ``python -m
bench.compare`` is the side-by-side comparison with PyTorch and the memory floor.
"""

import numpy as np
import pytest

import numba_pool as nb

SHAPE = (16, 64, 56, 56)  # (N, C, H, W)
LAYOUTS = ["nchw", "nhwc"]
DTYPES = [np.float32, np.float64]


def make_input(layout, dtype):
    x = np.random.default_rng(0).standard_normal(SHAPE).astype(dtype)
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if layout == "nhwc" else x


def forward_and_backward(layout, dtype):
    """(name, callable) for every op of the library on one input."""
    x = make_input(layout, dtype)
    view = dict(channels_last=layout == "nhwc")
    y, indices = nb.max_pool2d(x, 3, 2, 1, return_indices=True, **view)
    s, picks = nb.stochastic_pool2d(x, 3, 2, 1, seed=0, return_indices=True, **view)
    g, gi = nb.global_max_pool2d(x, return_indices=True, **view)
    a, ai = nb.adaptive_max_pool2d(x, 7, return_indices=True, **view)
    ones = np.ones_like
    return {
        "max_forward": lambda: nb.max_pool2d(x, 3, 2, 1, **view),
        "max_forward_indices": lambda: nb.max_pool2d(x, 3, 2, 1, return_indices=True, **view),
        "max_backward": lambda: nb.max_pool2d_backward(ones(y), indices, x.shape, **view),
        "avg_forward": lambda: nb.avg_pool2d(x, 3, 2, 1, **view),
        "avg_backward": lambda: nb.avg_pool2d_backward(ones(y), x.shape, 3, 2, 1, **view),
        "stochastic_training_forward": lambda: nb.stochastic_pool2d(x, 3, 2, 1, seed=0, return_indices=True, **view),
        "stochastic_inference_forward": lambda: nb.stochastic_pool2d(x, 3, 2, 1, training=False, **view),
        "stochastic_backward": lambda: nb.stochastic_pool2d_backward(ones(s), picks, x.shape, **view),
        "stochastic_inference_backward": lambda: nb.stochastic_pool2d_inference_backward(ones(s), x, 3, 2, 1, **view),
        "global_avg_forward": lambda: nb.global_avg_pool2d(x, **view),
        "global_avg_backward": lambda: nb.global_avg_pool2d_backward(ones(g), x.shape, **view),
        "global_max_forward": lambda: nb.global_max_pool2d(x, return_indices=True, **view),
        "global_max_backward": lambda: nb.global_max_pool2d_backward(ones(g), gi, x.shape, **view),
        "adaptive_avg_forward": lambda: nb.adaptive_avg_pool2d(x, 7, **view),
        "adaptive_avg_backward": lambda: nb.adaptive_avg_pool2d_backward(ones(a), x.shape, **view),
        "adaptive_max_forward": lambda: nb.adaptive_max_pool2d(x, 7, return_indices=True, **view),
        "adaptive_max_backward": lambda: nb.adaptive_max_pool2d_backward(ones(a), ai, x.shape, **view),
        "max_unpool": lambda: nb.max_unpool2d(y, indices, 3, 2, 1, output_size=SHAPE[2:], **view),
    }


OPS = list(forward_and_backward("nchw", np.float32))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("op", OPS)
def test_op(benchmark, op, layout, dtype):
    function = forward_and_backward(layout, dtype)[op]
    function()  # compile outside the timing
    benchmark(function)
