"""Device arrays of every family (numba, CuPy, PyTorch), seen through one small view type.

``DeviceView`` holds shape, strides (bytes) and dtype over memory owned by a
user's array or by a buffer we allocated. It supports exactly the view
operations ``_spec.Layout`` performs (new axes, transposes, taking index 0,
reshaping contiguous memory), none of which moves the first element, so
every view starts where its owner starts. Kernels get numba arrays made from
a view at launch; results go back to the user as an array of the input's
family over the same memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numba import cuda

from . import _streams

from numba.cuda.core import config as _cuda_config

SIMULATOR = bool(_cuda_config.ENABLE_CUDASIM)  # NUMBA_ENABLE_CUDASIM=1: kernels run on the CPU, "device" memory is host memory
if SIMULATOR:
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray as _SimulatorArray
else:
    _SimulatorArray = ()  # isinstance(x, ()) is always False


@dataclass(frozen=True)
class Flags:
    c_contiguous: bool


@dataclass(eq=False)
class DeviceView:
    """A strided view of device memory; the owner keeps the memory alive."""

    owner: object  # the user's array, or the flat buffer we allocated (in its family)
    family: str  # "numba", "cupy", "torch" or "simulator"
    shape: tuple
    strides: tuple  # in bytes, as NumPy's
    dtype: np.dtype
    stream: object = None  # the numba stream kernels on this array launch on
    is_owner_itself: bool = False  # True only for an untouched user array: export returns it as is
    cache: dict = field(default_factory=dict)  # shared by every view of one owner: results of passes over it

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def pointer(self) -> int:
        return _pointer_of(self.owner, self.family)

    @property
    def flags(self) -> Flags:
        return Flags(self.strides == _c_strides(self.shape, self.dtype.itemsize))

    def _derived(self, shape, strides) -> "DeviceView":
        return DeviceView(self.owner, self.family, tuple(shape), tuple(strides), self.dtype, self.stream, cache=self.cache)

    def transpose(self, *axes) -> "DeviceView":
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return self._derived([self.shape[a] for a in axes], [self.strides[a] for a in axes])

    def __getitem__(self, index) -> "DeviceView":
        """New axes (None), whole axes (:, ...) and index 0 of the first axis: the view operations layouts need."""
        index = index if isinstance(index, tuple) else (index,)
        if Ellipsis in index:
            at = index.index(Ellipsis)
            named = sum(1 for i in index if i is not None and i is not Ellipsis)
            index = index[:at] + (slice(None),) * (self.ndim - named) + index[at + 1 :]
        shape, strides, axis = [], [], 0
        for entry in index:
            if entry is None:
                shape.append(1)
                strides.append(0)
            elif entry == slice(None):
                shape.append(self.shape[axis])
                strides.append(self.strides[axis])
                axis += 1
            elif entry == 0 and axis == 0 and self.shape[0] > 0:
                axis += 1
            else:
                raise IndexError(f"DeviceView supports only None, ':' and a leading 0; got {index!r}")
        return self._derived(shape + list(self.shape[axis:]), strides + list(self.strides[axis:]))

    def reshape(self, *shape) -> "DeviceView":
        """Contiguous memory to any shape of the same size; any memory when only size-1 axes come or go."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        shape = tuple(int(n) for n in shape)
        if shape.count(-1) == 1:
            known = math.prod(n for n in shape if n != -1)
            shape = tuple(self.size // max(known, 1) if n == -1 else n for n in shape)
        if math.prod(shape) != self.size:
            raise ValueError(f"cannot reshape a device view of shape {self.shape} to {shape}")
        if self.flags.c_contiguous:
            return self._derived(shape, _c_strides(shape, self.dtype.itemsize))
        kept = [(n, s) for n, s in zip(self.shape, self.strides) if n != 1]
        if [n for n in shape if n != 1] != [n for n, _ in kept]:
            raise ValueError(f"cannot reshape a strided device view of shape {self.shape} to {shape} without a copy")
        strides, remaining = [], iter(kept)
        for n in shape:
            strides.append(next(remaining)[1] if n != 1 else 0)
        return self._derived(shape, strides)

    @property
    def __cuda_array_interface__(self) -> dict:
        return {
            "shape": self.shape,
            "strides": self.strides,
            "typestr": self.dtype.str,
            "data": (self.pointer, False),
            "version": 3,
            "stream": None,  # we synchronise through the launch stream ourselves
        }

    def byte_extent(self) -> tuple[int, int]:
        """[low, high) addresses the view can touch."""
        low = high = self.pointer
        for n, s in zip(self.shape, self.strides):
            if n == 0:
                return self.pointer, self.pointer
            if s < 0:
                low += (n - 1) * s
            else:
                high += (n - 1) * s
        return low, high + self.dtype.itemsize


def _c_strides(shape, itemsize) -> tuple:
    strides, step = [], itemsize
    for n in reversed(shape):
        strides.append(step)
        step *= max(n, 1)
    # Axes of size 1 may have any stride; NumPy's convention is the C stride.
    return tuple(reversed(strides))


def family_of(array) -> str:
    if SIMULATOR and isinstance(array, _SimulatorArray):
        return "simulator"
    module = type(array).__module__
    if module.startswith("cupy"):
        return "cupy"
    if module.startswith("torch"):
        return "torch"
    return "numba"  # numba device arrays, and anything else with a __cuda_array_interface__


def _pointer_of(owner, family) -> int:
    if family == "simulator":
        if isinstance(owner, _SimulatorArray):
            return owner._ary.__array_interface__["data"][0]
        return owner.__array_interface__["data"][0]  # a NumPy array standing in for device memory
    return owner.__cuda_array_interface__["data"][0]


def read_interface(array, name: str, op: str) -> dict:
    """The array's ``__cuda_array_interface__``, or a TypeError that says how to get one."""
    try:
        interface = array.__cuda_array_interface__
    except Exception as error:  # PyTorch raises on tensors that require grad, for one
        hint = (
            f"call {name}.detach() first (numba_pool's own gradients are in its *_backward functions "
            "and in numba_pool.torch)"
            if getattr(array, "requires_grad", False)
            else "pass a contiguous CUDA array of a supported family"
        )
        raise TypeError(f"{op}: cannot read {name}'s __cuda_array_interface__ ({error}); {hint}") from None
    if not isinstance(interface, dict) or not {"shape", "typestr", "data"} <= interface.keys():
        raise TypeError(f"{op}: {name}'s __cuda_array_interface__ is malformed: {interface!r}")
    if interface.get("mask") is not None:
        raise TypeError(f"{op}: {name} is a masked CUDA array; masks are not supported")
    return interface


def as_view(array, name: str, op: str) -> DeviceView:
    """Wrap a user's CUDA array (no copy, no synchronisation)."""
    if isinstance(array, DeviceView):
        return array
    family = family_of(array)
    if family == "simulator":
        host = array._ary
        return DeviceView(array, family, host.shape, host.strides, host.dtype, 0, is_owner_itself=True)
    interface = read_interface(array, name, op)
    dtype = np.dtype(interface["typestr"])
    shape = tuple(int(n) for n in interface["shape"])
    strides = interface.get("strides")
    strides = _c_strides(shape, dtype.itemsize) if strides is None else tuple(int(s) for s in strides)
    stream = _streams.from_interface(interface.get("stream"), array)
    if SIMULATOR:  # a CAI object under the simulator points at host memory: read it as a NumPy array
        host = _host_array_at(interface["data"][0], shape, strides, dtype, keep=array)
        return DeviceView(host, "simulator", shape, strides, dtype, 0)
    return DeviceView(array, family, shape, strides, dtype, stream, is_owner_itself=True)


def _host_array_at(pointer, shape, strides, dtype, keep) -> np.ndarray:
    """Simulator only: a NumPy array over host memory at ``pointer`` (the simulator's device memory)."""
    import ctypes

    probe = DeviceView(None, "numba", shape, strides, dtype)
    low, high = 0, 0
    for n, s in zip(probe.shape, probe.strides):
        if n:
            low, high = (low + (n - 1) * s, high) if s < 0 else (low, high + (n - 1) * s)
    buffer = (ctypes.c_char * max(high - low + dtype.itemsize, 1)).from_address(pointer + low)
    buffer.keep = keep  # the buffer does not own the memory: keep its owner alive with it
    return np.ndarray(shape, dtype, buffer, offset=-low, strides=strides)


# --------------------------------------------------------------------------- allocation and export


def empty(shape, dtype, like: DeviceView) -> DeviceView:
    """A new C-contiguous array of ``like``'s family, on its device and stream."""
    dtype = np.dtype(dtype)
    count = math.prod(shape)
    family = like.family
    if family == "simulator":
        base = cuda.device_array(max(count, 1), dtype)
    elif family == "cupy":
        import cupy

        with cupy.cuda.Device(like.owner.device.id):
            base = cupy.empty(max(count, 1), dtype)
    elif family == "torch":
        import torch

        torch_dtype = torch.from_numpy(np.empty(0, dtype)).dtype
        base = torch.empty(max(count, 1), dtype=torch_dtype, device=like.owner.device)
    else:
        base = cuda.device_array(max(count, 1), dtype, stream=like.stream or 0)
    return DeviceView(base, family, tuple(shape), _c_strides(shape, dtype.itemsize), dtype, like.stream)


def export(result):
    """A result (a view, or a tuple of them) as arrays of the input's family, sharing their memory."""
    if isinstance(result, tuple):
        return tuple(export(item) for item in result)
    return _export_view(result)


def _export_view(view: DeviceView):
    if view.is_owner_itself:
        return view.owner
    owner, family = view.owner, view.family
    if family == "simulator":
        host = owner._ary if isinstance(owner, _SimulatorArray) else owner
        return _SimulatorArray(np.lib.stride_tricks.as_strided(host, view.shape, view.strides))
    if family == "cupy":
        import cupy

        return cupy.lib.stride_tricks.as_strided(owner, view.shape, view.strides)
    if family == "torch":
        item = view.dtype.itemsize
        return owner.as_strided(view.shape, tuple(s // item for s in view.strides))
    return cuda.from_cuda_array_interface(view.__cuda_array_interface__, owner=owner, sync=False)


def kernel_argument(view: DeviceView):
    """A numba device array over the view's memory, to pass to a kernel."""
    if view.family == "simulator":
        host = view.owner._ary if isinstance(view.owner, _SimulatorArray) else view.owner
        host = host if host.dtype == view.dtype else host.view(view.dtype)  # a view read as other bits
        return _SimulatorArray(np.lib.stride_tricks.as_strided(host, view.shape, view.strides))
    return cuda.from_cuda_array_interface(view.__cuda_array_interface__, owner=view.owner, sync=False)


def overlaps(a: DeviceView, b: DeviceView) -> bool:
    (a_low, a_high), (b_low, b_high) = a.byte_extent(), b.byte_extent()
    return a_low < b_high and b_low < a_high
