"""Same values in, same bits out, whatever the memory layout (float64 sums included), and outputs in the
input's memory format (adaptive pooling, unpooling and the stochastic inference gradient too)."""

from __future__ import annotations

import numpy as np
import pytest

import numba_pool as nb

SEEDS = range(4)


def layouts(x: np.ndarray):
    """(name, array holding x's values as (N, C, H, W), channels_last flag, to (N, C, H, W)) for several memories."""
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    wide = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), x.dtype)
    wide[..., ::2] = x
    yield "nchw", x, False, lambda a: a
    yield "nhwc", nhwc, True, lambda a: np.moveaxis(a, -1, 1)
    yield "nhwc memory read as nchw", nhwc.transpose(0, 3, 1, 2), False, lambda a: a
    yield "strided", wide[..., ::2], False, lambda a: a
    yield "fortran", np.asfortranarray(x), False, lambda a: a


def assert_identical_in_every_layout(compute, x):
    expected = compute(x, False)
    for name, array, channels_last, back in layouts(x):
        np.testing.assert_array_equal(back(compute(array, channels_last)), expected, err_msg=name)


@pytest.mark.parametrize("seed", SEEDS)
def test_float64_sums_do_not_depend_on_the_layout(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 3, int(rng.integers(5, 40)), int(rng.integers(5, 40)))) * 10.0 ** rng.integers(-3, 4)
    kernel, stride = int(rng.integers(1, 5)), int(rng.integers(1, 4))
    padding = int(rng.integers(0, kernel // 2 + 1))
    include_pad = bool(rng.integers(2))

    def avg(a, last):
        return nb.avg_pool2d(a, kernel, stride, padding, False, include_pad, channels_last=last)

    assert_identical_in_every_layout(avg, x)
    assert_identical_in_every_layout(lambda a, last: nb.global_avg_pool2d(a, True, channels_last=last), x)
    assert_identical_in_every_layout(lambda a, last: nb.adaptive_avg_pool2d(a, (3, 4), channels_last=last), x)

    grad = rng.standard_normal(avg(x, False).shape)

    def avg_backward(g, last):
        return nb.avg_pool2d_backward(
            g, g.shape[:2] + x.shape[2:] if not last else (g.shape[0], *x.shape[2:], g.shape[-1]),
            kernel, stride, padding, False, include_pad, channels_last=last,
        )

    assert_identical_in_every_layout(avg_backward, grad)


def is_channels_last_memory(array: np.ndarray) -> bool:
    """Whether an (N, C, H, W)-shaped array keeps C innermost in memory."""
    return array.strides[1] == array.itemsize and array.strides[1] < min(array.strides[2:])


@pytest.mark.parametrize("channels_last", [False, True])
def test_outputs_follow_the_input_memory_format(channels_last):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 6, 8))
    nhwc_memory = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    given = nhwc_memory if channels_last else nhwc_memory.transpose(0, 3, 1, 2)  # one memory, two readings

    def channels_innermost(result):
        return is_channels_last_memory(np.moveaxis(result, -1, 1) if channels_last else result)

    y, indices = nb.adaptive_max_pool2d(given, (3, 4), True, channels_last=channels_last)
    assert channels_innermost(y) and channels_innermost(indices)
    assert channels_innermost(nb.adaptive_avg_pool2d(given, (3, 4), channels_last=channels_last))
    unpooled = nb.max_unpool2d(y, indices, 2, output_size=(6, 8), channels_last=channels_last)
    assert channels_innermost(unpooled)
    pooled = nb.stochastic_pool2d(given, 2, training=False, channels_last=channels_last)
    gradient = nb.stochastic_pool2d_inference_backward(np.ones_like(pooled), given, 2, channels_last=channels_last)
    assert channels_innermost(gradient)
    adaptive_gradient = nb.adaptive_avg_pool2d_backward(
        nb.adaptive_avg_pool2d(given, (3, 4), channels_last=channels_last), given.shape, channels_last=channels_last
    )
    assert channels_innermost(adaptive_gradient)

    # and the values are those of the contiguous computation
    np.testing.assert_array_equal(np.asarray(unpooled), np.asarray(nb.max_unpool2d(
        np.ascontiguousarray(y), np.ascontiguousarray(indices), 2, output_size=(6, 8), channels_last=channels_last
    )))


def _cpu_kernels():
    """Every compiled function of the CPU backend's modules, the serial twins of its parallel kernels too."""
    import sys

    import numba

    from numba_pool.backends.cpu import _threading

    found = []
    for name, module in list(sys.modules.items()):
        if name.startswith("numba_pool.backends.cpu.") and module is not None:
            for value in vars(module).values():
                if isinstance(value, numba.core.registry.CPUDispatcher):
                    found.append(value)
                    if _threading._is_parallel_kernel(value):
                        found.append(_threading._cached_serial_twin(value))
    return found


def test_fortran_ordered_arrays_are_typed_as_arrays_of_any_strides():
    import numba

    from numba_pool.backends.cpu._arrays import kernel_arguments

    x = np.zeros((2, 3, 1, 4, 5), np.float32)
    fortran, c_order, strided = kernel_arguments((np.asfortranarray(x), x, x[..., ::2]))
    assert numba.typeof(fortran).layout == "A" and not fortran.flags.c_contiguous
    assert c_order is x and numba.typeof(c_order).layout == "C"
    assert type(strided) is np.ndarray and numba.typeof(strided).layout == "A"


def test_the_users_own_numba_functions_keep_numbas_typing():
    """Numba caches argument types by memory layout and flags (read-only arrays take that path): a
    read-only Fortran-ordered array passed to the kernels must not change how it types the user's."""
    import numba

    @numba.njit
    def first_element(a):
        return a[0, 0, 0, 0]

    x = np.asfortranarray(np.random.default_rng(0).standard_normal((2, 3, 5, 4)))
    x.flags.writeable = False
    nb.max_pool2d(x, 2)
    first_element(x)
    (layout,) = [signature[0].layout for signature in first_element.signatures]
    assert layout == "F"


def test_a_result_is_never_the_kernels_view_class(monkeypatch):
    from numba_pool.backends.cpu import _threading

    monkeypatch.setattr(_threading, "SERIAL_BELOW", 0)
    returns_its_argument = _threading.thread_and_fork_safe(lambda array: array)
    assert type(returns_its_argument(np.asfortranarray(np.zeros((2, 3))))) is np.ndarray


def test_fortran_ordered_arrays_run_the_any_strides_kernels():
    """Fortran order gets no compiled versions of its own (one compile fewer per dtype and argument):
    the kernels see such arrays as arrays of any strides, and give the results of C order."""
    from numba_pool.tools.selfcheck import device_cases

    kernels = _cpu_kernels()
    before = {kernel: set(kernel.signatures) for kernel in kernels}
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 7, 6))
    for name, (call, _) in device_cases(nb, False, ((3, 2, 1),)).items():
        results = [call(np.asfortranarray(x) if fortran else x, _gradient_like(x.dtype, fortran)) for fortran in (True, False)]
        for got, expected in zip(*[result if isinstance(result, tuple) else (result,) for result in results]):
            assert type(got) is np.ndarray, name
            np.testing.assert_array_equal(got, expected, err_msg=name)
    added = [(kernel, signature) for kernel in kernels for signature in set(kernel.signatures) - before[kernel]]
    fortran = [(kernel, signature) for kernel, signature in added if any(_is_fortran_array(t) for t in signature)]
    assert not fortran, fortran


def _gradient_like(dtype, in_fortran_order: bool):
    """The ``gradient_like`` of ``device_cases``: the same values for every call, in C or Fortran order."""

    def make(y):
        gradient = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
        return np.asfortranarray(gradient) if in_fortran_order else gradient

    return make


def _is_fortran_array(numba_type) -> bool:
    import numba

    return isinstance(numba_type, numba.types.Array) and numba_type.layout == "F"
