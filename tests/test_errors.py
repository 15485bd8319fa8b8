"""Every bad argument is refused with a TypeError or ValueError that names it, before any kernel runs."""

import numpy as np
import pytest

import numba_pool as nb

X2 = np.zeros((2, 3, 8, 8), np.float32)
# What nb.max_pool2d(X2, 2, return_indices=True) returns (all values tie: each window's first element),
# written out so that collecting this file compiles nothing.
Y2 = np.zeros((2, 3, 4, 4), np.float32)
I2 = np.ascontiguousarray(np.broadcast_to(16 * np.arange(4)[:, None] + 2 * np.arange(4), Y2.shape), dtype=np.int64)

BAD_CALLS = {
    # shapes and dtypes of x
    "x ndim too small": (lambda: nb.max_pool2d(np.zeros((8, 8)), 2), ValueError, "x must have shape"),
    "x ndim too large": (lambda: nb.avg_pool1d(np.zeros((1, 2, 3, 8)), 2), ValueError, "x must have shape"),
    "zero channels": (lambda: nb.max_pool2d(np.zeros((1, 0, 4, 4)), 2), ValueError, "channel and spatial"),
    "zero spatial": (lambda: nb.avg_pool2d(np.zeros((1, 1, 0, 4)), 2), ValueError, "channel and spatial"),
    "avg of ints": (lambda: nb.avg_pool2d(np.zeros((1, 1, 4, 4), np.int32), 2), TypeError, "astype"),
    "avg of float128": (lambda: nb.avg_pool2d(np.zeros((1, 1, 4, 4), np.longdouble), 2), TypeError, "float16, float32 or float64"),
    "float16 x, float32 gradient": (
        lambda: nb.lp_pool1d_backward(np.ones((1, 1, 2), np.float32), np.ones((1, 1, 4), np.float16), 2, 2),
        TypeError, "grad_output has dtype float32 but x has dtype float16",
    ),
    "max of bool": (lambda: nb.max_pool2d(np.zeros((1, 1, 4, 4), bool), 2), TypeError, "integer dtype"),
    "max of complex": (lambda: nb.max_pool1d(np.zeros((1, 1, 4), complex), 2), TypeError, "dtype complex128"),
    "max of objects": (lambda: nb.max_pool1d(np.array([[[None, 1, 2, 3]]]), 2), TypeError, "dtype object"),
    "avg of strings": (lambda: nb.avg_pool1d([[["a", "b"]]], 1), TypeError, "x has dtype"),
    # window parameters
    "zero kernel": (lambda: nb.max_pool2d(X2, 0), ValueError, "kernel_size must be"),
    "negative kernel": (lambda: nb.avg_pool2d(X2, (2, -1)), ValueError, "kernel_size must be"),
    "float kernel": (lambda: nb.max_pool2d(X2, 2.0), TypeError, "kernel_size must be"),
    "bool kernel": (lambda: nb.max_pool2d(X2, True), TypeError, "kernel_size must be"),
    "kernel tuple too long": (lambda: nb.max_pool2d(X2, (2, 2, 2)), ValueError, "kernel_size must be"),
    "kernel tuple of floats": (lambda: nb.avg_pool2d(X2, (2, 2.5)), TypeError, "kernel_size must be"),
    "zero stride": (lambda: nb.max_pool2d(X2, 2, 0), ValueError, "stride must be"),
    "stride tuple too short": (lambda: nb.avg_pool3d(np.zeros((1, 1, 4, 4, 4)), 2, (1, 1)), ValueError, "stride must be"),
    "negative padding": (lambda: nb.max_pool2d(X2, 2, 1, -1), ValueError, "padding must be"),
    "padding over half the kernel": (lambda: nb.avg_pool2d(X2, 3, 1, 2), ValueError, "at most half the kernel"),
    "zero dilation": (lambda: nb.max_pool2d(X2, 2, dilation=0), ValueError, "dilation must be"),
    "string dilation": (lambda: nb.max_pool2d(X2, 2, dilation="2"), TypeError, "dilation must be"),
    "kernel larger than input": (lambda: nb.max_pool2d(X2, 9), ValueError, "output would be empty"),
    "dilated window larger than input": (lambda: nb.max_pool1d(np.zeros((1, 1, 5)), 3, dilation=3), ValueError, "output would be empty"),
    "window of padding only": (lambda: nb.max_pool1d(np.zeros((1, 1, 2)), 2, 1, 1, dilation=3), ValueError, "only padding"),
    "ceil_mode not a bool": (lambda: nb.max_pool2d(X2, 2, ceil_mode="yes"), TypeError, "ceil_mode"),
    "return_indices not a bool": (lambda: nb.max_pool2d(X2, 2, return_indices=None), TypeError, "return_indices"),
    "channels_last not a bool": (lambda: nb.avg_pool2d(X2, 2, channels_last=1), TypeError, "channels_last"),
    "count_include_pad not a bool": (lambda: nb.avg_pool2d(X2, 2, count_include_pad=0), TypeError, "count_include_pad"),
    "zero divisor": (lambda: nb.avg_pool2d(X2, 2, divisor_override=0), ValueError, "divisor_override"),
    "float divisor": (lambda: nb.avg_pool2d(X2, 2, divisor_override=2.0), TypeError, "divisor_override"),
    # out
    "out of wrong shape": (lambda: nb.max_pool2d(X2, 2, out=np.empty((2, 3, 4, 5), np.float32)), ValueError, "out must have shape"),
    "out of wrong dtype": (lambda: nb.avg_pool2d(X2, 2, out=np.empty((2, 3, 4, 4))), TypeError, "out must have dtype"),
    "out in the other layout": (lambda: nb.max_pool2d(X2, 2, channels_last=True, out=np.empty((2, 3, 4, 4), np.float32)), ValueError, "out must have shape"),
    "out not an array": (lambda: nb.max_pool2d(X2, 2, out=[0.0]), TypeError, "out must be"),
    "out read-only": (lambda: nb.max_pool2d(X2, 2, out=np.broadcast_to(np.float32(0), (2, 3, 4, 4))), ValueError, "read-only"),
    "out overlaps x": (lambda: _overlapping_out(), ValueError, "share memory"),
    # max backward
    "float indices": (lambda: nb.max_pool2d_backward(Y2, I2.astype(float), X2.shape), TypeError, "indices must be an integer"),
    "indices of wrong shape": (lambda: nb.max_pool2d_backward(Y2, I2[:, :, :2], X2.shape), ValueError, "indices must have"),
    "negative index": (lambda: nb.max_pool2d_backward(Y2, I2 - 1, X2.shape), ValueError, "indices must lie"),
    "index past the plane": (lambda: nb.max_pool2d_backward(Y2, I2 + 64, X2.shape), ValueError, "indices must lie"),
    "integer gradient": (lambda: nb.max_pool2d_backward(I2, I2, X2.shape), TypeError, "grad_output has dtype"),
    "gradient with other channels": (lambda: nb.max_pool2d_backward(Y2, I2, (2, 4, 8, 8)), ValueError, "does not match input_shape"),
    "unbatched gradient, batched input": (lambda: nb.max_pool2d_backward(Y2[0], I2[0], X2.shape), ValueError, "does not match input_shape"),
    "input_shape not a tuple": (lambda: nb.max_pool2d_backward(Y2, I2, 64), TypeError, "input_shape must be a tuple"),
    "input_shape negative": (lambda: nb.max_pool2d_backward(Y2, I2, (2, 3, -8, 8)), ValueError, "sizes from 0 to 2\\*\\*62"),
    "input_shape wrong rank": (lambda: nb.max_pool2d_backward(Y2, I2, (2, 3, 8, 8, 1)), ValueError, "input_shape must have shape"),
    # avg backward
    "avg gradient of wrong shape": (lambda: nb.avg_pool2d_backward(Y2[..., :3], X2.shape, 2), ValueError, "grad_output must have"),
    "avg gradient of ints": (lambda: nb.avg_pool2d_backward(I2, X2.shape, 2), TypeError, "grad_output has dtype"),
    "avg backward with bad kernel": (lambda: nb.avg_pool2d_backward(Y2, X2.shape, 0), ValueError, "kernel_size must be"),
}


def _overlapping_out():
    buffer = np.zeros((1, 1, 8))
    return nb.max_pool1d(buffer, 2, out=buffer[..., :4])


@pytest.mark.parametrize("name", BAD_CALLS)
def test_bad_argument_is_refused_with_a_clear_message(name):
    call, error, fragment = BAD_CALLS[name]
    with pytest.raises(error, match=fragment):
        call()


def test_messages_show_the_value_received():
    with pytest.raises(ValueError, match=r"got \(2, -1\)"):
        nb.avg_pool2d(X2, (2, -1))
    with pytest.raises(ValueError, match=r"got values from -1 to"):
        nb.max_pool2d_backward(Y2, I2 - 1, X2.shape)


def test_array_likes_are_accepted():
    np.testing.assert_array_equal(nb.max_pool1d([[[1.0, 3.0, 2.0, 0.0]]], 2), [[[3.0, 2.0]]])


def test_memoized_planning_still_checks_types():
    """Plans are cached per call signature; a float or bool size must not reuse the int's plan."""
    nb.max_pool2d(X2, 2)
    nb.avg_pool2d(X2, (1, 1))
    with pytest.raises(TypeError, match="kernel_size"):
        nb.max_pool2d(X2, 2.0)
    with pytest.raises(TypeError, match="kernel_size"):
        nb.avg_pool2d(X2, (True, 1))
    np.testing.assert_array_equal(nb.max_pool2d(X2, [2, 2]), nb.max_pool2d(X2, 2))  # lists are planned afresh
