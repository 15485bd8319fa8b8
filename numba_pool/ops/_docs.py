"""Docstring pieces every op's documentation shares (the op modules write the rest, per dimensionality)."""

SPATIAL_NAMES = {1: "(L)", 2: "(H, W)", 3: "(D, H, W)"}

# The float dtypes every op takes, and how it computes the 16-bit ones (backends/contract.py: computed_in_float32).
FLOATS = "float16, float32 or float64"
HALF_PRECISION_DOC = """\
    float16 (and ml_dtypes' bfloat16, on the CPU) is computed as float32 on
    the same values, each result rounded once to the 16-bit dtype (to
    nearest, ties to even): maxima, indices and picks are float32's."""

FLAT_INDEX = {1: "w", 2: "h * W + w", 3: "(d * H + h) * W + w"}

LAYOUT_DOC = """\
channels_last : bool, default False
    Read ``x`` as ``(N, *spatial, C)`` or unbatched ``(*spatial, C)`` instead of
    ``(N, C, *spatial)`` / ``(C, *spatial)``; outputs use the same layout."""

BACKWARD_OUT_DOC = """\
out : numpy.ndarray, optional
    Preallocated gradient of shape {shape} and ``grad_output``'s dtype, in any
    memory layout (strided views too), sharing no element with {read};
    written and returned as given. Reusing one buffer across training steps
    saves a fresh input-sized allocation (and its page faults) per call."""

WINDOW_DOC = """\
kernel_size : int or tuple of {dims} ints
    Window size.
stride : int or tuple of {dims} ints, optional
    Window step; ``None`` (default) means ``kernel_size``.
padding : int or tuple of {dims} ints, or "same" or "valid", default 0
    Implicit padding on both sides, at most ``kernel_size // 2``. The strings
    (in any case: "SAME" too, as JAX and Keras accept) give TensorFlow's
    padding: "valid" is ``padding=0``; "same" gives ceil(size / stride)
    outputs per dim, padded by ``max((out - 1) * stride + dilation *
    (kernel_size - 1) + 1 - size, 0)`` in all, the smaller half before the
    input and the extra element after it (which may exceed
    ``kernel_size // 2``), and refuses ``ceil_mode=True``."""

RAISES_DOC = """\
Raises
------
TypeError
    For a non-array input, an unsupported dtype or a non-integer size.
ValueError
    For a wrong number of dims, sizes out of range, or an empty output."""

# The end of the Parameters of a forward that can return indices, its Returns and Raises.
OUT_AND_RETURNS_WITH_INDICES_DOC = f"""{LAYOUT_DOC}
out : numpy.ndarray, optional
    Preallocated output of the right shape and dtype.

Returns
-------
numpy.ndarray or tuple of numpy.ndarray
    The pooled array, and the indices when ``return_indices``.

{RAISES_DOC}"""


def routed_backward_parameters(forward: str) -> str:
    """The Parameters of the backward of ``forward`` (e.g. ``max_pool2d``), which routes gradients by indices."""
    return f"""grad_output : numpy.ndarray
    Gradient with respect to the pooled output; {FLOATS}.
indices : numpy.ndarray
    The integer indices ``{forward}(..., return_indices=True)`` returned.
input_shape : tuple of int
    Shape of the forward input.
{LAYOUT_DOC}
{BACKWARD_OUT_DOC.format(shape="``input_shape``", read="``grad_output`` or ``indices``")}"""


ROUTED_BACKWARD_RAISES_DOC = """Raises
------
TypeError
    For a non-float gradient or non-integer indices.
ValueError
    For shapes that do not match or indices outside the input plane."""
