"""The array side of the CPU backend: NumPy arrays in, NumPy arrays out.

The CUDA backend has functions of the same names for device arrays, so the
public functions treat both alike.
"""

import numpy as np
from numba import types
from numba.extending import typeof_impl
from numba.np.numpy_support import from_dtype

from ..._spec import check_out, host_array


def asarray(array, name: str, op: str) -> np.ndarray:
    return host_array(array, name, op)


def empty(shape, dtype, like) -> np.ndarray:
    return np.empty(shape, dtype)


def export(result):
    return result


# --------------------------------------------------------------------------- arrays as the kernels see them


class StridedArray(np.ndarray):
    """A view that Numba types with layout "A" (any strides) where it would say "F" (Fortran order).

    Numba compiles a kernel once per layout of each array argument: "C", "F" or "A". The kernels
    gain nothing from knowing that an array is in Fortran order (their inner loops run along the
    last axis, whose stride "F" does not fix), so :func:`kernel_arguments` passes such arrays as
    this class, and the "A" version of each kernel, which strided views need anyway, serves them
    too, without a copy. The attribute below is Numba's opt-in for typing an ndarray subclass
    through ``typeof_impl``; plain arrays keep Numba's own typing, in user code too.
    """

    __numba_array_subtype_dispatch__ = True


@typeof_impl.register(StridedArray)
def _typeof_strided_array(array, context):
    layout = "C" if array.flags.c_contiguous else "A"
    return types.Array(from_dtype(array.dtype), array.ndim, layout, readonly=not array.flags.writeable)


def kernel_arguments(args) -> tuple:
    """``args`` with each Fortran-ordered NumPy array (not also C-ordered) viewed as a :class:`StridedArray`.

    The other arrays pass as they are (a view of each would cost about 0.1 us in every call). So a
    view that an entry derives from a C-ordered array can still reach a kernel in Fortran order
    (a transpose with size-1 axes): a rare extra compile, never a wrong result.
    """
    return tuple(arg.view(StridedArray) if type(arg) is np.ndarray and arg.flags.fnc else arg for arg in args)


def plain(result):
    """An entry's result as the user would get it: never a :class:`StridedArray`."""
    return result.view(np.ndarray) if type(result) is StridedArray else result


__all__ = ["asarray", "check_out", "empty", "export"]
