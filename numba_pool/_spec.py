"""The one place where user arguments are checked and normalised.

Everything here runs before any kernel: sizes become tuples, output sizes are
computed with PyTorch's rule, and arrays in any supported layout get a
*canonical view*: ``(N, C, D, H, W)`` with size-1 axes standing in for the
spatial dims a 1-D or 2-D op does not have. The canonical view is always a
view (never a copy), so strided inputs and preallocated outputs are read and
written in place.

Longer than the usual 300 lines on purpose: every rule a user's argument must
pass (sizes, dtypes, layouts, ``out`` buffers, window geometry) is here, so
that an error message is written once and every op and adapter gives the same.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

# Sets, so that checking a dtype is one hash lookup on the per-call path.
# float16 runs every kernel in float32 (see backends/contract.py: computed_in_float32), as does ml_dtypes'
# bfloat16 on the CPU, which is recognised by name (``is_bfloat16``) so that ml_dtypes stays optional.
HALF = np.dtype(np.float16)
FLOAT_DTYPES = frozenset(np.dtype(t) for t in (np.float16, np.float32, np.float64))
INTEGER_DTYPES = frozenset(
    np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64)
)
FLOAT_AND_INTEGER_DTYPES = FLOAT_DTYPES | INTEGER_DTYPES

# The canonical view has this many spatial axes whatever the op's dimensionality.
CANONICAL_SPATIAL_DIMS = 3
_NEUTRAL = {"kernel_size": 1, "stride": 1, "padding": 0, "dilation": 1}


def memoized(function):
    """Cache ``function`` on its arguments' values *and* types (so 2.0 or True never hit the entry of 2 or 1).

    Validation and planning run once per distinct call signature; repeated calls
    with the same shapes and parameters, as in a training loop, skip them.
    Unhashable arguments (lists) are planned afresh each time.
    """
    cache: dict = {}

    @functools.wraps(function)
    def cached(*args, **options):
        try:  # one list comprehension, no call per argument: this runs on every pooling call
            types = tuple([tuple(map(type, a)) if type(a) is tuple else type(a) for a in args])
            key = (args, types, tuple(sorted(options.items()))) if options else (args, types)
            return cache[key]
        except TypeError:  # unhashable
            return function(*args, **options)
        except KeyError:
            pass
        result = function(*args, **options)
        if len(cache) > 1024:
            cache.clear()
        cache[key] = result
        return result

    return cached


# --------------------------------------------------------------------------- scalars


def is_integer(value) -> bool:
    """True for Python and NumPy integers, False for bools (which are ints in Python)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_flag(value, name: str, op: str) -> bool:
    """Return ``value`` as a bool, refusing anything that is not a bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{op}: {name} must be True or False; got {value!r} of type {type(value).__name__}")
    return bool(value)


# Window arithmetic in the kernels is int64: with every size at most 2**62 a sum of two never overflows.
LARGEST_SIZE = 2**62


def size_tuple(value, dims: int, name: str, op: str, minimum: int) -> tuple[int, ...]:
    """Turn an int or a sequence of ``dims`` ints into a tuple, each from ``minimum`` to ``LARGEST_SIZE``."""
    accepted = f"an int from {minimum} to 2**62 or a tuple of {dims} such ints"
    if is_integer(value):
        values = (int(value),) * dims
    elif isinstance(value, (tuple, list)):
        if len(value) != dims:
            raise ValueError(f"{op}: {name} must be {accepted}; got {value!r} with {len(value)} entries")
        if not all(is_integer(v) for v in value):
            raise TypeError(f"{op}: {name} must be {accepted}; got {value!r}, which holds a non-integer")
        values = tuple(int(v) for v in value)
    else:
        raise TypeError(f"{op}: {name} must be {accepted}; got {value!r} of type {type(value).__name__}")
    if any(v < minimum or v > LARGEST_SIZE for v in values):
        raise ValueError(f"{op}: {name} must be {accepted}; got {value!r}")
    return values


def optional_nonzero_int(value, name: str, op: str) -> int:
    """``None`` -> 0 (meaning "not given"); otherwise a nonzero int from -2**62 to 2**62."""
    accepted = "None or a nonzero int from -2**62 to 2**62"
    if value is None:
        return 0
    if not is_integer(value):
        raise TypeError(f"{op}: {name} must be {accepted}; got {value!r} of type {type(value).__name__}")
    if value == 0 or abs(int(value)) > LARGEST_SIZE:
        raise ValueError(f"{op}: {name} must be {accepted}; got {value!r}")
    return int(value)


# --------------------------------------------------------------------------- arrays


def host_array(x, name: str, op: str) -> np.ndarray:
    """``x`` as a NumPy array, without a copy when it already is one.

    Subclasses whose elements mean more than their data (masked arrays, matrices)
    are refused; others (memmap, user subclasses) are read as plain ndarray views.
    """
    if type(x) is np.ndarray:
        return x
    if isinstance(x, (np.ma.MaskedArray, np.matrix)):
        raise TypeError(
            f"{op}: {name} is a {type(x).__name__}, which pooling cannot honour (a mask or matrix semantics); "
            f"pass a plain array, e.g. {name}.filled(value) for a masked array or np.asarray({name}) for a matrix"
        )
    if isinstance(x, np.ndarray):
        return x.view(np.ndarray)
    if hasattr(type(x), "__dlpack__"):  # PyTorch, JAX, TensorFlow, CuPy ... arrays: read in place
        return _from_dlpack(x, name, op)
    try:
        return np.asarray(x)
    except Exception as error:  # array-likes can fail in many ways; report them uniformly
        raise TypeError(f"{op}: {name} must be a NumPy array or array-like; got {type(x).__name__} ({error})") from None


DLPACK_CPU = 1  # kDLCPU, the host in DLPack's device types


def _from_dlpack(x, name: str, op: str) -> np.ndarray:
    """A host array exported through DLPack, as a NumPy array on the same memory (no copy)."""
    kind = type(x).__name__
    device = getattr(x, "__dlpack_device__", lambda: (DLPACK_CPU, 0))()
    if device[0] != DLPACK_CPU:  # a GPU array without __cuda_array_interface__ (those go to the CUDA backend)
        raise TypeError(
            f"{op}: {name} ({kind}) is on DLPack device {tuple(device)}, not in host memory, and it has no "
            "__cuda_array_interface__ for the CUDA backend; pass it through cupy.from_dlpack or torch.from_dlpack, "
            "or copy it to the host"
        )
    try:
        return np.from_dlpack(x)
    except Exception as error:  # e.g. a dtype DLPack lacks (JAX's bfloat16), or a tensor that requires grad
        dlpack_error = error
    try:
        return np.asarray(x)  # the library's own conversion, when it has one
    except Exception:
        raise TypeError(f"{op}: NumPy cannot read {name} ({kind}) through DLPack ({dlpack_error})") from None


def is_bfloat16(dtype: np.dtype) -> bool:
    """Whether ``dtype`` is ml_dtypes' bfloat16 (told by name: ml_dtypes is never imported here)."""
    return dtype.kind == "V" and dtype.name == "bfloat16" and dtype.type.__module__.startswith("ml_dtypes")


def is_16bit_float(dtype: np.dtype) -> bool:
    """float16 or bfloat16: the dtypes whose values the kernels compute in float32 and round once at the store."""
    return dtype.itemsize == 2 and (dtype.kind == "f" or is_bfloat16(dtype))


def check_dtype(array: np.ndarray, accepted: frozenset, name: str, op: str) -> None:
    if array.dtype in accepted or (HALF in accepted and is_bfloat16(array.dtype)):
        return
    floats_only = all(d.kind == "f" for d in accepted)
    described = "float16, float32 or float64" if floats_only else "float16, float32, float64 or an integer dtype"
    fix = f"convert it first, e.g. {name}.astype(np.float32)"
    raise TypeError(f"{op}: {name} has dtype {array.dtype}; accepted dtypes are {described} ({fix})")


def check_same_16bit_float(array: np.ndarray, name: str, other: np.ndarray, other_name: str, op: str) -> None:
    """Refuse a 16-bit float next to another float dtype: autograd never mixes them, so a mix is a slip."""
    if array.dtype != other.dtype and (is_16bit_float(array.dtype) or is_16bit_float(other.dtype)):
        raise TypeError(
            f"{op}: {name} has dtype {array.dtype} but {other_name} has dtype {other.dtype}; with a 16-bit float "
            f"(float16, bfloat16) both must have the same dtype (convert one, e.g. {name}.astype({other_name}.dtype))"
        )


def layout_description(dims: int, channels_last: bool) -> str:
    spatial = ("L",) if dims == 1 else ("D", "H", "W")[3 - dims :]
    if channels_last:
        batched, unbatched = ("N", *spatial, "C"), (*spatial, "C")
    else:
        batched, unbatched = ("N", "C", *spatial), ("C", *spatial)
    return f"({', '.join(batched)}) or unbatched ({', '.join(unbatched)})"


@dataclass(frozen=True)
class Layout:
    """Where batch, channel and spatial sizes sit in a user's array shape."""

    dims: int
    batched: bool
    channels_last: bool

    def split(self, shape: tuple[int, ...]) -> tuple[int, int, tuple[int, ...]]:
        """``shape`` -> (batch, channels, spatial sizes)."""
        if not self.batched:
            shape = (1, *shape)
        if self.channels_last:
            return shape[0], shape[-1], tuple(shape[1:-1])
        return shape[0], shape[1], tuple(shape[2:])

    def join(self, batch: int, channels: int, spatial: tuple[int, ...]) -> tuple[int, ...]:
        """(batch, channels, spatial sizes) -> the user's shape."""
        shape = (*spatial, channels) if self.channels_last else (channels, *spatial)
        return (batch, *shape) if self.batched else shape

    def empty(
        self, batch: int, channels: int, spatial: tuple[int, ...], dtype, channels_last_memory: bool, allocate=np.empty
    ) -> np.ndarray:
        """A new array of the user's shape, whose memory is channels-last or channels-first as asked.

        ``allocate(shape, dtype)`` makes the C-ordered memory (``np.empty``, or a device allocator).
        """
        if channels_last_memory:
            array = allocate((batch, *spatial, channels), dtype)
            array = array if self.channels_last else array.transpose(_CHANNELS_TO_FRONT[self.dims])
        else:
            array = allocate((batch, channels, *spatial), dtype)
            array = array.transpose(_CHANNELS_TO_BACK[self.dims]) if self.channels_last else array
        return array if self.batched else array[0]

    def canonical(self, array: np.ndarray) -> np.ndarray:
        """A view of ``array`` as (N, C, D, H, W); never a copy (plain indexing and transposes only)."""
        if not self.batched:
            array = array[np.newaxis]
        if self.channels_last:
            array = array.transpose(_CHANNELS_TO_FRONT[self.dims])
        return array[_ADD_SPATIAL_AXES[self.dims]]


# Index expressions and axis orders the canonical view needs, per op dimensionality.
_ADD_SPATIAL_AXES = {1: (slice(None), slice(None), None, None), 2: (slice(None), slice(None), None), 3: (Ellipsis,)}
_CHANNELS_TO_FRONT = {dims: (0, dims + 1) + tuple(range(1, dims + 1)) for dims in (1, 2, 3)}
_CHANNELS_TO_BACK = {dims: (0,) + tuple(range(2, dims + 2)) + (1,) for dims in (1, 2, 3)}


def channels_innermost(canonical: np.ndarray) -> bool:
    """Whether a canonical (N, C, D, H, W) view keeps its channels closer together than any spatial axis.

    Such memory (channels-last, whatever the user calls the layout) runs the
    channels-last kernels, which vectorise over the channels.
    """
    if canonical.shape[1] < 2:
        return False
    spatial_strides = [abs(s) for s, n in zip(canonical.strides[2:], canonical.shape[2:]) if n > 1]
    return not spatial_strides or abs(canonical.strides[1]) < min(spatial_strides)


def kernel_view(canonical: np.ndarray, channels_last_memory: bool) -> np.ndarray:
    """The view a kernel takes: (N, C, D, H, W), or (N, D, H, W, C) for channels-last memory."""
    return canonical.transpose(0, 2, 3, 4, 1) if channels_last_memory else canonical


@memoized
def layout_of(shape: tuple[int, ...], dims: int, channels_last: bool, name: str, op: str) -> Layout:
    """Check the rank and sizes of ``shape`` and say how to read it."""
    if len(shape) not in (dims + 1, dims + 2):
        expected = layout_description(dims, channels_last)
        raise ValueError(f"{op}: {name} must have shape {expected}, i.e. {dims + 2} or {dims + 1} dims; got shape {tuple(shape)}")
    layout = Layout(dims, len(shape) == dims + 2, channels_last)
    _, channels, spatial = layout.split(tuple(shape))
    if channels < 1 or min(spatial) < 1:
        expected = layout_description(dims, channels_last)
        raise ValueError(
            f"{op}: {name} has shape {tuple(shape)} read as {expected}; channel and spatial sizes must be "
            "at least 1 (only the batch size may be 0)"
        )
    return layout


@memoized
def shape_tuple(value, dims: int, name: str, op: str, channels_last: bool) -> tuple[int, ...]:
    """Check a user-given input shape (for backward passes) and return it as a tuple of ints."""
    if not isinstance(value, (tuple, list)) or not all(is_integer(v) for v in value):
        raise TypeError(f"{op}: {name} must be a tuple of ints such as x.shape; got {value!r}")
    shape = tuple(int(v) for v in value)
    if any(v < 0 or v > LARGEST_SIZE for v in shape):
        raise ValueError(f"{op}: {name} must hold sizes from 0 to 2**62; got {shape}")
    layout_of(shape, dims, channels_last, name, op)
    return shape


def check_out(
    out, shape: tuple[int, ...], dtype: np.dtype, op: str, source: np.ndarray, source_name: str = "x", also_read=()
) -> np.ndarray:
    """The user's preallocated ``out``, once its type, shape, dtype and memory are known to be usable.

    ``source`` is the array the op reads whose dtype ``out`` takes, named ``source_name`` in messages;
    ``also_read`` holds (name, array) pairs of other arrays the kernel reads, which ``out`` must not overlap either.
    """
    if not isinstance(out, np.ndarray) or isinstance(out, (np.ma.MaskedArray, np.matrix)):
        raise TypeError(f"{op}: out must be a plain NumPy array or None; got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"{op}: out must have shape {shape} (the output's shape in this layout); got {out.shape}")
    if out.dtype != dtype:
        raise TypeError(f"{op}: out must have dtype {dtype} (the dtype of {source_name}); got {out.dtype}")
    if not out.flags.writeable:
        raise ValueError(f"{op}: out is read-only; pass a writeable array")
    check_elements_distinct(out.shape, out.strides, out.itemsize, op)
    for name, array in ((source_name, source), *also_read):
        # may_share_memory compares address ranges (cheap); shares_memory then settles interleaved views exactly.
        if np.may_share_memory(out, array) and _share_elements(out, array):
            raise ValueError(
                f"{op}: out must not share memory with {name} (an element of out is also an element of "
                f"{name}); pass a separate array"
            )
    return out


def _share_elements(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether some byte of ``a`` is a byte of ``b``; when that is too costly to settle, assume so."""
    try:
        return np.shares_memory(a, b, max_work=10**6)
    except np.exceptions.TooHardError:
        return True


def check_elements_distinct(shape: tuple[int, ...], strides: tuple[int, ...], itemsize: int, op: str) -> None:
    """Refuse an ``out`` in which two elements occupy the same memory (a broadcast view, as_strided).

    The test is the one every view made by slicing, reversing or transposing
    passes: ordered by stride, each axis steps over everything the axes inside
    it span. (A few exotic non-overlapping as_strided views fail it too.)
    """
    if 0 in shape:
        return
    span = itemsize  # bytes from the first to past the last element of the axes handled so far
    for stride, size in sorted((abs(st), n) for st, n in zip(strides, shape) if n > 1):
        if stride < span:
            raise ValueError(
                f"{op}: out has elements that share memory (strides {tuple(strides)} for shape {tuple(shape)}, "
                "as in a broadcast view); pass an array whose elements are distinct, e.g. np.empty(shape, dtype)"
            )
        span = stride * (size - 1) + span
    return None


# --------------------------------------------------------------------------- windows


def pooled_length(
    length: int, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool, padding_end=None
) -> int:
    """PyTorch's output size for one spatial dim (may be < 1; the caller refuses that).

    ``padding`` is the padding before the input, ``padding_end`` the one after it
    (``None``: the same as ``padding``, PyTorch's symmetric padding).
    """
    padding_end = padding if padding_end is None else padding_end
    span = length + padding + padding_end - dilation * (kernel - 1) - 1
    if ceil_mode:
        count = -(-span // stride) + 1
        # A last window that would start inside the right padding is dropped.
        if (count - 1) * stride >= length + padding:
            count -= 1
        return count
    return span // stride + 1


def window_touches_input(start: int, kernel: int, dilation: int, length: int) -> bool:
    """Whether a tap start + i * dilation (0 <= i < kernel) lies in [0, length), in O(1)."""
    first = 0 if start >= 0 else -(start // dilation)  # the first tap at or right of 0
    return first < kernel and start + first * dilation < length


def check_windows_touch_input(op: str, axis: int, count: int, kernel: int, stride: int, padding: int, dilation: int, length: int):
    """Refuse a dilated window that starts in the left padding and skips over the whole input.

    Only windows starting left of 0 can, and only with dilation > 1 (numeric padding
    is at most half the kernel; 'same' pads at most (dilation * (kernel - 1)) // 2
    before the input, so the first tap at or right of 0 is still a tap, and every
    window starts left of the input's end). Which of them do depends on start % dilation alone,
    which repeats every dilation / gcd(stride, dilation) windows, so at most that
    many (and never more than the output's length) are looked at.
    """
    if dilation == 1:
        return
    in_left_padding = min(count, -(-padding // stride), dilation // math.gcd(stride, dilation))
    for o in range(in_left_padding):
        if not window_touches_input(o * stride - padding, kernel, dilation, length):
            raise ValueError(
                f"{op}: window {o} along spatial dim {axis} holds only padding (kernel_size {kernel}, "
                f"dilation {dilation}, padding {padding}, input size {length}); reduce dilation or padding"
            )


# The padding strings accepted (in any case, as JAX and Keras accept them): TensorFlow's two padding modes.
PADDING_MODES = ("same", "valid")


def same_padding(length: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding along one axis: (before, after), the extra element after.

    The output has ceil(length / stride) windows; the padding is what the last
    one needs beyond the input, ``max((out - 1) * stride + dilation * (kernel - 1) + 1 - length, 0)``,
    split with the smaller half before.
    """
    count = -(-length // stride)
    total = max((count - 1) * stride + dilation * (kernel - 1) + 1 - length, 0)
    return total // 2, total - total // 2


def padding_mode(padding, op: str):
    """``"same"`` or ``"valid"`` for a padding string (any case), or ``None`` for anything else (numeric padding)."""
    if not isinstance(padding, str):
        return None
    mode = padding.lower()
    if mode not in PADDING_MODES:
        raise ValueError(
            f"{op}: padding must be an int, a tuple of ints, or one of the strings 'same' or 'valid' "
            f"(in any case); got {padding!r}"
        )
    return mode


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: plans are memoized, so equal plans are one object
class WindowPlan:
    """A validated sliding-window pooling: sizes, parameters and layouts."""

    layout: Layout
    batch: int
    channels: int
    input_spatial: tuple[int, ...]
    output_spatial: tuple[int, ...]
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]  # before the input along each axis (the kernels' window start is o * stride - padding)
    dilation: tuple[int, ...]
    padding_end: tuple[int, ...]  # after the input: ``padding`` except under 'same', whose extra element lies here

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.layout.join(self.batch, self.channels, self.input_spatial)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.layout.join(self.batch, self.channels, self.output_spatial)

    @functools.cached_property
    def covering_windows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per canonical axis, a (2, input length) array: the range of windows [first, stop) covering each position."""
        missing = CANONICAL_SPATIAL_DIMS - self.layout.dims
        lengths = (1,) * missing + self.input_spatial
        counts = (1,) * missing + self.output_spatial
        covers = window_covers(lengths, counts, *self.canonical_parameters)
        for cover in covers:
            cover.flags.writeable = False
        return covers

    @property
    def canonical_output_shape(self) -> tuple[int, ...]:
        """The (N, C, D, H, W) shape of the output."""
        missing = (1,) * (CANONICAL_SPATIAL_DIMS - self.layout.dims)
        return (self.batch, self.channels, *missing, *self.output_spatial)

    @functools.cached_property
    def canonical_parameters(self) -> tuple[tuple[int, int, int], ...]:
        """(kernel, stride, padding, dilation), each padded to 3 dims with neutral leading values."""
        missing = CANONICAL_SPATIAL_DIMS - self.layout.dims
        return tuple(
            (_NEUTRAL[name],) * missing + getattr(self, name)
            for name in ("kernel_size", "stride", "padding", "dilation")
        )

    @functools.cached_property
    def canonical_padding_end(self) -> tuple[int, int, int]:
        """The padding after the input per canonical axis (0 for the axes an op does not have)."""
        return (0,) * (CANONICAL_SPATIAL_DIMS - self.layout.dims) + self.padding_end


@memoized
def plan_window(
    op: str,
    dims: int,
    input_shape: tuple[int, ...],
    kernel_size,
    stride,
    padding,
    dilation,
    ceil_mode,
    channels_last: bool,
    input_name: str = "x",
) -> WindowPlan:
    """Check every window parameter against ``input_shape`` and compute the output shape.

    ``padding`` is an int or tuple (PyTorch's symmetric padding, at most half the
    kernel), ``"valid"`` (no padding: exactly ``padding=0``, ``ceil_mode`` as with it)
    or ``"same"`` (TensorFlow's: ceil(L / stride) outputs, the padding that needs,
    the extra element after the input; ``ceil_mode=True`` is refused with it).
    """
    layout = layout_of(input_shape, dims, channels_last, input_name, op)
    batch, channels, spatial = layout.split(tuple(input_shape))
    kernel = size_tuple(kernel_size, dims, "kernel_size", op, minimum=1)
    stride = kernel if stride is None else size_tuple(stride, dims, "stride", op, minimum=1)
    mode = padding_mode(padding, op)
    dilation = size_tuple(dilation, dims, "dilation", op, minimum=1)
    ceil_mode = check_flag(ceil_mode, "ceil_mode", op)
    if mode == "same":
        if ceil_mode:
            raise ValueError(
                f"{op}: ceil_mode=True cannot be combined with padding={padding!r}, which already fixes the output "
                "size at ceil(input size / stride); pass ceil_mode=False, or a numeric padding with ceil_mode=True"
            )
        pads = [same_padding(length, k, s, d) for length, k, s, d in zip(spatial, kernel, stride, dilation)]
        padding, padding_end = tuple(p for p, _ in pads), tuple(e for _, e in pads)
    else:
        padding = size_tuple(0 if mode == "valid" else padding, dims, "padding", op, minimum=0)
        padding_end = padding
        for k, p in zip(kernel, padding):
            if p > k // 2:
                raise ValueError(
                    f"{op}: padding must be at most half the kernel size (kernel_size // 2) in every dim; "
                    f"got padding={padding} with kernel_size={kernel} (padding='same' pads as TensorFlow does instead)"
                )
    output = []
    for axis, (length, k, s, p, d, e) in enumerate(zip(spatial, kernel, stride, padding, dilation, padding_end)):
        count = pooled_length(length, k, s, p, d, ceil_mode, e)
        if count < 1:
            raise ValueError(
                f"{op}: the output would be empty along spatial dim {axis}: input size {length} with "
                f"padding {p} is smaller than the window (kernel_size {k}, dilation {d}); "
                "use a smaller kernel_size or dilation, or more padding"
            )
        check_windows_touch_input(op, axis, count, k, s, p, d, length)
        output.append(count)
    return WindowPlan(layout, batch, channels, spatial, tuple(output), kernel, stride, padding, dilation, padding_end)


# --------------------------------------------------------------------------- adaptive bins and unpooling sizes


def adaptive_output_size(value, spatial: tuple[int, ...], op: str) -> tuple[int, ...]:
    """An int or a tuple of D entries, each an int >= 1 or None (keep that input size)."""
    dims = len(spatial)
    accepted = f"an int from 1 to 2**62 or a tuple of {dims} entries, each such an int or None"
    entries = (value,) * dims if is_integer(value) else value
    if not isinstance(entries, (tuple, list)):
        raise TypeError(f"{op}: output_size must be {accepted}; got {value!r} of type {type(value).__name__}")
    if len(entries) != dims:
        raise ValueError(f"{op}: output_size must be {accepted}; got {value!r} with {len(entries)} entries")
    if not all(v is None or is_integer(v) for v in entries):
        raise TypeError(f"{op}: output_size must be {accepted}; got {value!r}")
    sizes = tuple(length if v is None else int(v) for v, length in zip(entries, spatial))
    if min(sizes) < 1 or max(sizes) > LARGEST_SIZE:
        raise ValueError(f"{op}: output_size must be {accepted}; got {value!r}")
    return sizes


def adaptive_bins(length: int, out_length: int) -> np.ndarray:
    """PyTorch's bins: start = floor(i * L / out), stop = ceil((i + 1) * L / out)."""
    i = np.arange(out_length)
    starts = (i * length) // out_length
    stops = -((-(i + 1) * length) // out_length)
    return np.stack([starts, stops]).astype(np.int64)


def window_covers(lengths, counts, kernel, stride, padding, dilation=(1, 1, 1)) -> tuple[np.ndarray, ...]:
    """Per axis, the (2, length) range of sliding windows [first, stop) that contain each position."""
    covers = []
    for length, count, k, s, p, d in zip(lengths, counts, kernel, stride, padding, dilation):
        starts = np.arange(count) * s - p
        covers.append(covering_bins(np.stack([starts, starts + d * (k - 1) + 1]), length))
    return tuple(covers)


def covering_bins(bins: np.ndarray, length: int) -> np.ndarray:
    """For each input position, the range (first, stop) of bins that contain it."""
    positions = np.arange(length)
    first = np.searchsorted(bins[1], positions, side="right")  # first bin whose stop is past the position
    stop = np.searchsorted(bins[0], positions, side="right")  # bins starting at or before it
    return np.stack([first, stop]).astype(np.int64)


@functools.lru_cache(maxsize=1024)
def avg_scales(plan: "WindowPlan", count_include_pad: bool, divisor_override: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-axis factors whose product is 1 / divisor of each window (0 for a window with no input).

    A window is a box, so its divisor (window size with or without padding) is a
    product of per-axis sizes; ``divisor_override`` goes into the last axis.
    """
    kernel, stride, padding, _ = plan.canonical_parameters
    lengths = (1,) * (CANONICAL_SPATIAL_DIMS - plan.layout.dims) + plan.input_spatial
    counts = (1,) * (CANONICAL_SPATIAL_DIMS - plan.layout.dims) + plan.output_spatial
    scales = []
    parameters = zip(lengths, counts, kernel, stride, padding, plan.canonical_padding_end)
    for axis, (length, count, k, s, p, e) in enumerate(parameters):
        starts = np.arange(count) * s - p
        stops = np.minimum(starts + k, length + e)  # clipped to the padded input: padding before, e after
        inside = np.minimum(stops, length) - np.maximum(starts, 0)
        sizes = (stops - starts) if count_include_pad else inside
        if divisor_override:
            sizes = np.full(count, divisor_override if axis == CANONICAL_SPATIAL_DIMS - 1 else 1)
        with np.errstate(divide="ignore"):
            scale = np.where(inside > 0, 1.0 / sizes, 0.0)
        scale.flags.writeable = False  # shared by every call with this plan
        scales.append(scale)
    return tuple(scales)
