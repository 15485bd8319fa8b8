"""Random pooling configurations and the layouts/views the tests feed to the kernels."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from numba_pool import reference

VIEWS = ("contiguous", "step", "reversed", "fortran")


@dataclass(frozen=True)
class Case:
    dims: int
    batch: int
    channels: int
    spatial: tuple
    kernel: tuple
    stride: tuple
    padding: tuple
    dilation: tuple
    ceil_mode: bool
    batched: bool
    channels_last: bool
    view: str
    dtype: type = np.float64
    count_include_pad: bool = True
    divisor_override: int | None = None

    def is_valid(self) -> bool:
        return reference.is_valid(self.spatial, self.kernel, self.stride, self.padding, self.dilation, self.ceil_mode)

    # --- layouts: the reference works on (N, C, *spatial); the library gets the user's layout

    def to_user(self, array: np.ndarray) -> np.ndarray:
        """A reference-layout array in this case's layout, batching and memory view."""
        if self.channels_last:
            array = np.moveaxis(array, 1, -1)
        if not self.batched:
            array = array[0]
        return strided_view(np.ascontiguousarray(array), self.view)

    def from_user(self, array: np.ndarray) -> np.ndarray:
        if not self.batched:
            array = array[np.newaxis]
        if self.channels_last:
            array = np.moveaxis(array, -1, 1)
        return array

    def user_shape(self, spatial) -> tuple:
        shape = (*spatial, self.channels) if self.channels_last else (self.channels, *spatial)
        return (self.batch, *shape) if self.batched else shape


def strided_view(array: np.ndarray, view: str) -> np.ndarray:
    """The same values as ``array`` behind different strides."""
    if view == "contiguous":
        return array
    if view == "step":  # every other element of a twice-as-wide buffer
        wide = np.zeros(array.shape[:-1] + (2 * array.shape[-1],), array.dtype)
        wide[..., ::2] = array
        return wide[..., ::2]
    if view == "reversed":  # negative strides on every axis
        return np.flip(np.flip(array).copy())
    if view == "fortran":
        return np.asfortranarray(array)
    raise ValueError(view)


def random_values(rng, shape, dtype, special=True) -> np.ndarray:
    """Values with many ties, and (for floats, when ``special``) some inf and NaN."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        low, high = max(info.min, -50), min(info.max, 50)
        values = rng.integers(low, high, size=shape, endpoint=True).astype(dtype)
        extremes = rng.choice(np.array([info.min, info.max], dtype=dtype), size=shape)
        return np.where(rng.random(shape) < 0.05, extremes, values)
    values = rng.standard_normal(shape)
    ties = rng.random(shape) < 0.3
    values = np.where(ties, np.round(values), values)
    if special:
        values[rng.random(shape) < 0.03] = -np.inf
        values[rng.random(shape) < 0.01] = np.inf
        values[rng.random(shape) < 0.01] = np.nan
    return values.astype(dtype)


# Strided views (which the CPU kernels take as arrays of any strides, Numba's layout "A") meet float32 cases;
# float64 cases stay contiguous. A kernel's code for a view differs from its code for a contiguous array only
# in the index arithmetic, the same for both float dtypes, while each (dtype, layout) pair costs every kernel
# it reaches a compile of several seconds on a cold run.
FLOAT64_VIEWS = ("contiguous",)


def random_case(rng, dims: int, *, dilation: bool = True, dtypes=(np.float32, np.float64)) -> Case:
    """A valid random configuration; edge cases (empty batch, unbatched, channels_last) are common."""
    while True:
        kernel = tuple(int(k) for k in rng.integers(1, 5, dims))
        case = Case(
            dims=dims,
            batch=int(rng.choice([0, 1, 2, 3], p=[0.05, 0.35, 0.4, 0.2])),
            channels=int(rng.integers(1, 4)),
            spatial=tuple(int(n) for n in rng.integers(1, 10 if dims < 3 else 7, dims)),
            kernel=kernel,
            stride=tuple(int(s) for s in rng.integers(1, 4, dims)),
            padding=tuple(int(rng.integers(0, k // 2 + 1)) for k in kernel),
            dilation=tuple(int(d) for d in rng.integers(1, 4, dims)) if dilation else (1,) * dims,
            ceil_mode=bool(rng.random() < 0.5),
            batched=bool(rng.random() < 0.8),
            channels_last=bool(rng.random() < 0.5),
            view=str(rng.choice(VIEWS)),
            dtype=dtypes[int(rng.integers(len(dtypes)))],
            count_include_pad=bool(rng.random() < 0.5),
            divisor_override=int(rng.choice([1, 3, -2])) if rng.random() < 0.2 else None,
        )
        if not case.batched:
            case = replace(case, batch=1)
        if case.dtype == np.float64 and case.view not in FLOAT64_VIEWS:
            case = replace(case, view="contiguous")
        if case.is_valid():
            return case

# The narrowest and widest signed and unsigned integers. The kernels' code differs between integer dtypes
# only in the element type, and these four are the extremes of Numba's integer typing (uint64 does not
# mix with int64); each dtype costs every max kernel it reaches about 5 s of first-run compiling (10 s for
# the direct kernel). The other tests that pool integers on the CPU (the comparisons with the CUDA backend,
# the direct kernel's, warm's) take their dtypes from these four too: int16 and int32 no longer run there.
INTEGER_DTYPES = (np.int8, np.int64, np.uint8, np.uint64)


def nan_heavy_values(rng, shape, dtype=np.float64) -> np.ndarray:
    """Many ties, many NaNs (often several per window), some -inf: for the max pooling NaN and tie rules."""
    values = np.round(rng.standard_normal(shape) * 2)
    values[rng.random(shape) < 0.2] = np.nan
    values[rng.random(shape) < 0.05] = -np.inf
    return values.astype(dtype)


def backend_case(seed: int, dims: int, **options):
    """A random case small enough for the CUDA simulator, and the view ("step" or "contiguous") its
    input takes on the backend."""
    rng = np.random.default_rng(seed)
    case = random_case(rng, dims, **options)
    view = "step" if rng.random() < 0.3 else "contiguous"
    return rng, case, view


def user_values(rng, case: Case, special: bool = True) -> np.ndarray:
    """Random values in the case's user shape (C-contiguous)."""
    return random_values(rng, case.user_shape(case.spatial), case.dtype, special=special)


def window_options(case: Case) -> dict:
    return dict(kernel_size=case.kernel, stride=case.stride, padding=case.padding, ceil_mode=case.ceil_mode)
