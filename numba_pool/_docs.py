"""Docstrings of the public functions, built per dimensionality (1-D, 2-D, 3-D)."""

_SPATIAL_NAMES = {1: "(L)", 2: "(H, W)", 3: "(D, H, W)"}
_FLAT_INDEX = {1: "w", 2: "h * W + w", 3: "(d * H + h) * W + w"}


_LAYOUT_DOC = """\
channels_last : bool, default False
    Read ``x`` as (N, *spatial, C) or unbatched (*spatial, C) instead of
    (N, C, *spatial) / (C, *spatial); outputs use the same layout."""

_BACKWARD_OUT_DOC = """\
out : numpy.ndarray, optional
    Preallocated gradient of shape {shape} and ``grad_output``'s dtype, in any
    memory layout (strided views too), sharing no element with {read};
    written and returned as given. Reusing one buffer across training steps
    saves a fresh input-sized allocation (and its page faults) per call."""

_WINDOW_DOC = """\
kernel_size : int or tuple of {dims} ints
    Window size.
stride : int or tuple of {dims} ints, optional
    Window step; ``None`` (default) means ``kernel_size``.
padding : int or tuple of {dims} ints, default 0
    Implicit padding on both sides, at most ``kernel_size // 2``."""

_RAISES_DOC = """\
Raises
------
TypeError
    For a non-array input, an unsupported dtype or a non-integer size.
ValueError
    For a wrong number of dims, sizes out of range, or an empty output."""


def max_pool_doc(dims: int) -> str:
    spatial = _SPATIAL_NAMES[dims]
    return f"""{dims}-D max pooling, with PyTorch's semantics.

Each output element is the maximum of its window. Padding never wins; ties
go to the first maximum in window order and NaN propagates (the last NaN in
window order wins, as in PyTorch).

Parameters
----------
x : numpy.ndarray
    Input of shape (N, C) + {spatial} or unbatched (C,) + {spatial}; float32,
    float64 or any integer dtype (kept in the output). Any strides.
{_WINDOW_DOC.format(dims=dims)}
dilation : int or tuple of {dims} ints, default 1
    Spacing between window elements.
ceil_mode : bool, default False
    Round the output size up instead of down.
return_indices : bool, default False
    Also return the argmax of each window as int64, flat within its
    (n, c) plane ({_FLAT_INDEX[dims]}), for ``max_pool{dims}d_backward``.
{_LAYOUT_DOC}
out : numpy.ndarray, optional
    Preallocated output of the right shape and dtype.

Returns
-------
numpy.ndarray or tuple of numpy.ndarray
    The pooled array, and the indices when ``return_indices``.

{_RAISES_DOC}

Examples
--------
>>> import numpy as np, numba_pool
>>> x = np.random.default_rng(0).random((2, 3) + (8,) * {dims}, dtype=np.float32)
>>> numba_pool.max_pool{dims}d(x, 2).shape
{(2, 3) + (4,) * dims}
"""


def max_pool_backward_doc(dims: int) -> str:
    return f"""Gradient of ``max_pool{dims}d``: each output gradient goes to its argmax.

Parameters
----------
grad_output : numpy.ndarray
    Gradient with respect to the pooled output; float32 or float64.
indices : numpy.ndarray
    The integer indices ``max_pool{dims}d(..., return_indices=True)`` returned.
input_shape : tuple of int
    Shape of the forward input.
{_LAYOUT_DOC}
{_BACKWARD_OUT_DOC.format(shape="``input_shape``", read="``grad_output`` or ``indices``")}

Returns
-------
numpy.ndarray
    Gradient with respect to the input, of shape ``input_shape``. Windows
    that share an argmax add up, in a fixed order (deterministic).

Raises
------
TypeError
    For a non-float gradient or non-integer indices.
ValueError
    For shapes that do not match or indices outside the input plane.

Examples
--------
>>> import numpy as np, numba_pool
>>> x = np.array([[[1.0, 3.0, 2.0, 0.0]]])
>>> y, idx = numba_pool.max_pool1d(x, 2, return_indices=True)
>>> numba_pool.max_pool1d_backward(np.ones_like(y), idx, x.shape)
array([[[0., 1., 1., 0.]]])
"""


def avg_pool_doc(dims: int) -> str:
    spatial = _SPATIAL_NAMES[dims]
    return f"""{dims}-D average pooling, with PyTorch's semantics.

Parameters
----------
x : numpy.ndarray
    Input of shape (N, C) + {spatial} or unbatched (C,) + {spatial}; float32
    or float64. Any strides.
{_WINDOW_DOC.format(dims=dims)}
ceil_mode : bool, default False
    Round the output size up instead of down.
count_include_pad : bool, default True
    Count padded zeros in the divisor.
divisor_override : int, optional
    Divide every window sum by this instead.
{_LAYOUT_DOC}
out : numpy.ndarray, optional
    Preallocated output of the right shape and dtype.

Returns
-------
numpy.ndarray
    The pooled array, of the input's dtype.

{_RAISES_DOC}

Examples
--------
>>> import numpy as np, numba_pool
>>> numba_pool.avg_pool1d(np.array([[[1.0, 3.0, 2.0, 4.0]]]), 2)
array([[[2., 3.]]])
"""


def avg_pool_backward_doc(dims: int) -> str:
    return f"""Gradient of ``avg_pool{dims}d``: each window's gradient spread over it.

Takes the forward call's window parameters; each input element gathers
``grad / divisor`` from every window that covers it (deterministic).

Parameters
----------
grad_output : numpy.ndarray
    Gradient with respect to the pooled output; float32 or float64.
input_shape : tuple of int
    Shape of the forward input.
kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
    As given to ``avg_pool{dims}d``.
{_LAYOUT_DOC}
{_BACKWARD_OUT_DOC.format(shape="``input_shape``", read="``grad_output``")}

Returns
-------
numpy.ndarray
    Gradient with respect to the input, of shape ``input_shape``.

{_RAISES_DOC}

Examples
--------
>>> import numpy as np, numba_pool
>>> numba_pool.avg_pool1d_backward(np.array([[[2.0, 4.0]]]), (1, 1, 4), 2)
array([[[1., 1., 2., 2.]]])
"""


def stochastic_pool_doc(dims: int) -> str:
    spatial = _SPATIAL_NAMES[dims]
    return f"""{dims}-D stochastic pooling (Zeiler & Fergus, 2013).

Weights are ``w = max(a, 0)`` over each window's in-input elements (padding is
never picked). In training one element is picked with probability
``w / sum(w)`` (uniformly when ``sum(w) == 0``) and returned; at inference
the expected value ``sum(w * a) / sum(w)`` is returned (the window mean when
``sum(w) == 0``). A NaN in a window makes its output NaN.

Randomness comes from a counter-based generator keyed by ``seed`` and each
output's logical position: the same seed gives the same picks whatever the
thread count and the layout.

Parameters
----------
x : numpy.ndarray
    Input of shape (N, C) + {spatial} or unbatched (C,) + {spatial}; float32
    or float64.
{_WINDOW_DOC.format(dims=dims)}
ceil_mode : bool, default False
    Round the output size up instead of down.
training : bool, default True
    Sample (True) or return the expected value (False).
seed : int, numpy.random.Generator or None
    ``None`` draws a fresh seed, so successive calls differ; a Generator
    gives one seed per call and advances.
return_indices : bool, default False
    Also return the picked elements' flat plane indices (training only), for
    ``stochastic_pool{dims}d_backward``.
{_LAYOUT_DOC}
out : numpy.ndarray, optional
    Preallocated output of the right shape and dtype.

Returns
-------
numpy.ndarray or tuple of numpy.ndarray
    The pooled array, and the indices when ``return_indices``.

{_RAISES_DOC}

Examples
--------
>>> import numpy as np, numba_pool
>>> window = np.array([[[1.0, 2.0, 3.0, 4.0]]])
>>> numba_pool.stochastic_pool1d(window, 4, training=False)
array([[[3.]]])
>>> value, index = numba_pool.stochastic_pool1d(window, 4, seed=0, return_indices=True)
>>> bool(value[0, 0, 0] == window[0, 0, index[0, 0, 0]])
True
"""


def stochastic_pool_backward_doc(dims: int) -> str:
    return f"""Training gradient of ``stochastic_pool{dims}d``: each output gradient goes to the picked element.

For the gradient of the inference output (``training=False``) use
``stochastic_pool{dims}d_inference_backward``; ``StochasticPool{dims}d`` layers
choose between the two by their mode.

Parameters
----------
grad_output : numpy.ndarray
    Gradient with respect to the pooled output; float32 or float64.
indices : numpy.ndarray
    The integer indices ``stochastic_pool{dims}d(..., return_indices=True)`` returned.
input_shape : tuple of int
    Shape of the forward input.
{_LAYOUT_DOC}
{_BACKWARD_OUT_DOC.format(shape="``input_shape``", read="``grad_output`` or ``indices``")}

Returns
-------
numpy.ndarray
    Gradient with respect to the input (deterministic).

Raises
------
TypeError
    For a non-float gradient or non-integer indices.
ValueError
    For shapes that do not match or indices outside the input plane.

Examples
--------
>>> import numpy as np, numba_pool
>>> x = np.array([[[0.0, 5.0, 0.0, 0.0]]])
>>> y, idx = numba_pool.stochastic_pool1d(x, 2, seed=1, return_indices=True)
>>> numba_pool.stochastic_pool1d_backward(np.ones_like(y), idx, x.shape)[0, 0, :2]
array([0., 1.])
"""


def stochastic_pool_inference_backward_doc(dims: int) -> str:
    return f"""Exact gradient of ``stochastic_pool{dims}d(x, ..., training=False)``.

The inference output is ``sum(w * a) / sum(w)`` with ``w = max(a, 0)``; an
element with ``a > 0`` receives ``g * (2 a S - sum(w**2)) / S**2`` where
``S = sum(w)``, other elements 0; a window with ``S == 0`` (its mean) gives
each element ``g / count``.

Parameters
----------
grad_output : numpy.ndarray
    Gradient with respect to the inference output; float32 or float64.
x : numpy.ndarray
    The forward input (the gradient depends on it).
kernel_size, stride, padding, ceil_mode
    As given to ``stochastic_pool{dims}d``.
{_LAYOUT_DOC}
{_BACKWARD_OUT_DOC.format(shape="``x.shape``", read="``grad_output`` or ``x``")}

Returns
-------
numpy.ndarray
    Gradient with respect to ``x`` (deterministic).

{_RAISES_DOC}

Examples
--------
>>> import numpy as np, numba_pool
>>> numba_pool.stochastic_pool1d_inference_backward(np.ones((1, 1, 1)), np.array([[[1.0, 3.0]]]), 2)
array([[[-0.125,  0.875]]])
"""


def global_pool_doc(dims: int, kind: str) -> str:
    spatial = _SPATIAL_NAMES[dims]
    what = "mean" if kind == "avg" else "maximum (first maximum on ties; NaN propagates: the last NaN wins)"
    dtypes = "float32 or float64" if kind == "avg" else "float32, float64 or an integer dtype"
    indices = "" if kind == "avg" else f"""
return_indices : bool, default False
    Also return the flat plane index of each maximum, for ``global_max_pool{dims}d_backward``."""
    example = "[[2.5]]" if kind == "avg" else "[[4.]]"
    return f"""{dims}-D global {kind} pooling: the {what} of each whole (n, c) plane.

Parameters
----------
x : numpy.ndarray
    Input of shape (N, C) + {spatial} or unbatched (C,) + {spatial}; {dtypes}.
keepdims : bool, default False
    Keep size-1 spatial dims: (N, C) + (1,) * {dims} instead of (N, C).{indices}
{_LAYOUT_DOC}

Returns
-------
numpy.ndarray or tuple of numpy.ndarray
    Shape (N, C) or unbatched (C,), or with keepdims the input's layout with size-1 spatial dims.

Raises
------
TypeError
    For a non-array input or an unsupported dtype.
ValueError
    For a wrong number of dims or empty channel/spatial dims.

Examples
--------
>>> import numpy as np, numba_pool
>>> numba_pool.global_{kind}_pool{dims}d(np.arange(1.0, 5.0).reshape((1, 1) + (1,) * ({dims} - 1) + (4,)))
array({example})
"""


def global_pool_backward_doc(dims: int, kind: str) -> str:
    route = "spread evenly over its plane" if kind == "avg" else "sent to the plane's maximum"
    indices = "" if kind == "avg" else "\nindices : numpy.ndarray\n    The indices the forward call returned."
    read = "``grad_output``" if kind == "avg" else "``grad_output`` or ``indices``"
    return f"""Gradient of ``global_{kind}_pool{dims}d``: each output gradient {route}.

Parameters
----------
grad_output : numpy.ndarray
    Gradient of shape (N, C) / (C,), or the keepdims shape; float32 or float64.{indices}
input_shape : tuple of int
    Shape of the forward input.
{_LAYOUT_DOC}
{_BACKWARD_OUT_DOC.format(shape="``input_shape``", read=read)}

Returns
-------
numpy.ndarray
    Gradient with respect to the input (deterministic).

Raises
------
TypeError
    For a non-float gradient (or non-integer indices).
ValueError
    For shapes that do not match input_shape.
"""


def adaptive_pool_doc(dims: int, kind: str) -> str:
    spatial = _SPATIAL_NAMES[dims]
    what = "mean" if kind == "avg" else "maximum (first maximum on ties; NaN propagates: the last NaN wins)"
    dtypes = "float32 or float64" if kind == "avg" else "float32, float64 or an integer dtype"
    indices = "" if kind == "avg" else f"""
return_indices : bool, default False
    Also return each maximum's flat plane index, for ``adaptive_max_pool{dims}d_backward``."""
    return f"""{dims}-D adaptive {kind} pooling: the {what} of each of ``output_size`` bins per axis.

Bin ``i`` of ``out`` along an axis of length ``L`` spans
``floor(i * L / out)`` to ``ceil((i + 1) * L / out)``, as in PyTorch; bins may overlap.

Parameters
----------
x : numpy.ndarray
    Input of shape (N, C) + {spatial} or unbatched (C,) + {spatial}; {dtypes}.
output_size : int or tuple of {dims} (int or None)
    Bins per spatial dim; ``None`` keeps that dim's input size.{indices}
{_LAYOUT_DOC}

Returns
-------
numpy.ndarray or tuple of numpy.ndarray
    The pooled array in the input's layout (and the indices when asked).

{_RAISES_DOC}

Examples
--------
>>> import numpy as np, numba_pool
>>> numba_pool.adaptive_{kind}_pool1d(np.array([[[1.0, 2.0, 3.0, 4.0, 5.0]]]), 2)
array([[[{"2., 4." if kind == "avg" else "3., 5."}]]])
"""


def adaptive_avg_pool_backward_doc(dims: int) -> str:
    return f"""Gradient of ``adaptive_avg_pool{dims}d``: each bin's gradient spread evenly over it.

The output size is read from ``grad_output``; each input element gathers from
the bins that hold it (deterministic).

Parameters
----------
grad_output : numpy.ndarray
    Gradient with respect to the pooled output; float32 or float64.
input_shape : tuple of int
    Shape of the forward input.
{_LAYOUT_DOC}
{_BACKWARD_OUT_DOC.format(shape="``input_shape``", read="``grad_output``")}

Returns
-------
numpy.ndarray
    Gradient with respect to the input.

{_RAISES_DOC}
"""


def max_unpool_doc(dims: int) -> str:
    return f"""{dims}-D max unpooling, the partial inverse of ``max_pool{dims}d`` (as ``torch.nn.functional.max_unpool{dims}d``).

Each value of ``x`` is written at its index in a zero-filled output; when two
values share an index, the later one in input order wins.

Parameters
----------
x : numpy.ndarray
    Pooled values, (N, C) + spatial or unbatched; float32, float64 or integers.
indices : numpy.ndarray
    Flat plane indices into the output, of ``x``'s shape (from ``return_indices=True``).
kernel_size, stride, padding
    As given to the pooling; they fix the default output size ``(L - 1) * stride - 2 * padding + kernel_size``.
output_size : tuple of int, optional
    The spatial output sizes (or the whole output shape), each within one stride of the default.
{_LAYOUT_DOC}

Returns
-------
numpy.ndarray
    The unpooled array, of ``x``'s dtype.

{_RAISES_DOC}

Examples
--------
>>> import numpy as np, numba_pool
>>> y, idx = numba_pool.max_pool1d(np.array([[[1.0, 3.0, 2.0, 0.0]]]), 2, return_indices=True)
>>> numba_pool.max_unpool1d(y, idx, 2)
array([[[0., 3., 2., 0.]]])
"""
