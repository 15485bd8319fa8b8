"""Fractional max pooling against the NumPy reference and PyTorch (bit for bit), on every backend; seeds,
the routed backward over overlapping windows, errors, layer, torch module, dask and the check line."""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import pytest

import numba_pool
from numba_pool import reference
from numba_pool.ops import fractional_pool
from cases import VIEWS, random_values, strided_view
from helpers import assert_matches, assert_same_results, op


@dataclass(frozen=True)
class FractionalCase:
    dims: int
    batch: int
    channels: int
    spatial: tuple
    kernel: tuple
    output: tuple
    batched: bool
    channels_last: bool
    view: str
    dtype: type

    def to_user(self, array):
        """The user's layout, C-contiguous (``view`` says which strides the backend gets)."""
        if self.channels_last:
            array = np.moveaxis(array, 1, -1)
        if not self.batched:
            array = array[0]
        return np.ascontiguousarray(array)

    def from_user(self, array):
        array = array if self.batched else array[np.newaxis]
        return np.moveaxis(array, -1, 1) if self.channels_last else array


def random_fractional_case(rng, dims, *, small=False, views=VIEWS):
    batched = bool(rng.random() < 0.8)
    longest = 6 if small else (10 if dims < 3 else 7)
    spatial = tuple(int(n) for n in rng.integers(1, longest + 1, dims))
    kernel = tuple(int(rng.integers(1, length + 1)) for length in spatial)
    return FractionalCase(
        dims=dims,
        batch=int(rng.choice([0, 1, 2, 3], p=[0.1, 0.3, 0.4, 0.2])) if batched else 1,
        channels=int(rng.integers(1, 4)),
        spatial=spatial,
        kernel=kernel,
        output=tuple(int(rng.integers(1, length - k + 2)) for length, k in zip(spatial, kernel)),
        batched=batched,
        channels_last=bool(rng.random() < 0.5),
        view=str(rng.choice(views)),
        dtype=(np.float32, np.float64)[int(rng.integers(2))],
    )


def backend_views(backend):
    """The memory views a backend's ``put`` makes (device arrays: contiguous or every other element)."""
    return ("contiguous", "step") if backend.name == "cuda" else VIEWS


def random_samples(rng, case):
    samples = rng.random((case.batch, case.channels, case.dims)).astype(case.dtype)
    samples[rng.random(samples.shape) < 0.1] = 0.0
    samples[rng.random(samples.shape) < 0.1] = np.nextafter(case.dtype(1), case.dtype(0))  # the largest below 1
    return samples


def pool(x, case, **options):
    return op("fractional_max_pool", case.dims)(x, case.kernel, case.output, channels_last=case.channels_last, **options)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", range(6))
def test_forward_and_backward_match_the_reference(backend, dims, seed):
    rng = np.random.default_rng([70 + dims, seed])
    case = random_fractional_case(rng, dims, small=backend.name == "cuda", views=backend_views(backend))
    x = random_values(rng, (case.batch, case.channels) + case.spatial, case.dtype)
    samples = random_samples(rng, case)
    expected_y, expected_indices = reference.fractional_max_pool(x, case.kernel, case.output, samples)
    user_samples = backend.put(samples, "contiguous") if backend.name == "cuda" and rng.random() < 0.5 else samples
    forward = op("fractional_max_pool", dims)
    y, indices = forward(backend.put(case.to_user(x), case.view), case.kernel, case.output, return_indices=True,
                         _random_samples=user_samples, channels_last=case.channels_last)
    y, indices = backend.get((y, indices))
    assert y.dtype == x.dtype and indices.dtype == np.int64
    np.testing.assert_array_equal(case.from_user(y), expected_y, err_msg=str(case))
    np.testing.assert_array_equal(case.from_user(indices), expected_indices, err_msg=str(case))

    grad = rng.standard_normal(expected_y.shape).astype(case.dtype)
    backward = op("fractional_max_pool", dims, "backward")
    user_shape = case.to_user(x).shape
    put = backend.put
    got = backward(put(case.to_user(grad), "contiguous"), put(case.to_user(expected_indices), "contiguous"), user_shape,
                   channels_last=case.channels_last)
    got = backend.get(got)
    assert got.shape == user_shape and got.dtype == grad.dtype
    assert_matches(case.from_user(got), reference.max_pool_backward(grad, expected_indices, case.spatial), err_msg=str(case))


@pytest.mark.parametrize("dims", [2, 3])
def test_values_and_indices_equal_pytorchs_bit_for_bit(dims):
    torch = pytest.importorskip("torch")
    function = getattr(torch.nn.functional, f"fractional_max_pool{dims}d")
    rng = np.random.default_rng(dims)
    for _ in range(150):
        case = random_fractional_case(rng, dims)
        if case.batch == 0 or (dims == 3 and any(o > n - k for o, n, k in zip(case.output, case.spatial, case.kernel))):
            continue  # PyTorch refuses empty batches here and, in 3-D, out = L - kernel + 1
        x = random_values(rng, (case.batch, case.channels) + case.spatial, case.dtype)
        samples = random_samples(rng, case)
        tensor = torch.from_numpy(x)
        if case.channels_last and dims == 2:
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        expected = function(tensor, case.kernel, output_size=case.output, return_indices=True, _random_samples=torch.from_numpy(samples))
        got = pool(strided_view(case.to_user(x), case.view), case, return_indices=True, _random_samples=samples)
        assert_same_results(tuple(case.from_user(a) for a in got), tuple(t.numpy() for t in expected))


def test_windows_are_computed_in_the_inputs_float_type_as_pytorch_does():
    # L = 12, kernel 2, 4 outputs, u = 0.1: (2 + u) * alpha is 6.99.. in float32 but 7.0 in float64
    torch = pytest.importorskip("torch")
    x = np.arange(12.0).reshape(1, 1, 1, 12)
    assert reference.fractional_interval_starts(np.float64(np.float32(0.1)), 12, 2, 4) == [0, 3, 7, 10]
    for dtype, starts in ((np.float32, [0, 3, 6, 10]), (np.float64, [0, 3, 7, 10])):
        samples = np.array([[[0.1, 0.0]]], dtype)
        expected = torch.nn.functional.fractional_max_pool2d(
            torch.from_numpy(x.astype(dtype)), (1, 2), output_size=(1, 4), return_indices=True,
            _random_samples=torch.from_numpy(samples),
        )[1].numpy()
        got = numba_pool.fractional_max_pool2d(x.astype(dtype), (1, 2), (1, 4), return_indices=True, _random_samples=samples)[1]
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(got.ravel(), np.array(starts) + 1)  # the larger of each window's two


def test_sample_slots_follow_pytorch():
    x = np.arange(63.0).reshape(1, 1, 7, 9)
    # (4, 4) outputs: u = 0.7 moves a width window (not a height one), u = 0.9 a height window
    width_only = numba_pool.fractional_max_pool2d(x, 2, 4, return_indices=True, _random_samples=np.array([[[0.7, 0.0]]]))[1]
    height_only = numba_pool.fractional_max_pool2d(x, 2, 4, return_indices=True, _random_samples=np.array([[[0.0, 0.9]]]))[1]
    base = numba_pool.fractional_max_pool2d(x, 2, 4, return_indices=True, _random_samples=np.zeros((1, 1, 2)))[1]
    assert np.array_equal(width_only // 9, base // 9) and not np.array_equal(width_only % 9, base % 9)
    assert np.array_equal(height_only % 9, base % 9) and not np.array_equal(height_only // 9, base // 9)


def test_windows_at_the_edges_of_the_output_size_range():
    x = np.arange(8.0).reshape(1, 1, 8)
    # one output: the window at the end (PyTorch's rule); L - k + 1 outputs: every window, stride 1
    np.testing.assert_array_equal(numba_pool.fractional_max_pool1d(x, 3, 1, return_indices=True, _random_samples=np.array([[[0.5]]]))[1], [[[7]]])
    np.testing.assert_array_equal(numba_pool.fractional_max_pool1d(x, 3, 6, seed=1), [[[2.0, 3, 4, 5, 6, 7]]])
    y = numba_pool.fractional_max_pool3d(np.ones((1, 1, 4, 4, 4)), 2, 3, seed=0)  # PyTorch's 3-D op refuses this size
    np.testing.assert_array_equal(y, np.ones((1, 1, 3, 3, 3)))


def test_overlapping_windows_add_their_gradients():
    torch = pytest.importorskip("torch")
    x = np.array([[[1.0, 3.0, 2.0, 0.0]]])
    y, indices = numba_pool.fractional_max_pool1d(x, 2, 3, return_indices=True, seed=0)
    np.testing.assert_array_equal(numba_pool.fractional_max_pool1d_backward(np.ones_like(y), indices, x.shape), [[[0.0, 2.0, 1.0, 0.0]]])
    rng = np.random.default_rng(1)
    for _ in range(20):  # PyTorch's autograd over many overlapping windows
        x = np.round(rng.standard_normal((2, 3, 9, 8)))
        samples = rng.random((2, 3, 2))
        tensor = torch.tensor(x, requires_grad=True)
        size = tuple(int(n) for n in rng.integers(3, 7, 2))
        y = torch.nn.functional.fractional_max_pool2d(tensor, 3, output_size=size, _random_samples=torch.tensor(samples))
        grad = rng.standard_normal(y.shape)
        y.backward(torch.tensor(grad))
        _, indices = numba_pool.fractional_max_pool2d(x, 3, size, return_indices=True, _random_samples=samples)
        np.testing.assert_allclose(numba_pool.fractional_max_pool2d_backward(grad, indices, x.shape), tensor.grad.numpy(), rtol=1e-12)


def test_seeded_windows_are_reproducible_and_fresh_without_a_seed():
    x = np.random.default_rng(0).random((2, 3, 20, 20))
    first = numba_pool.fractional_max_pool2d(x, 2, 12, return_indices=True, seed=7)[1]
    np.testing.assert_array_equal(numba_pool.fractional_max_pool2d(x, 2, 12, return_indices=True, seed=7)[1], first)
    assert not np.array_equal(numba_pool.fractional_max_pool2d(x, 2, 12, return_indices=True, seed=8)[1], first)
    assert not np.array_equal(*(numba_pool.fractional_max_pool2d(x, 2, 12, return_indices=True)[1] for _ in range(2)))
    generator = np.random.default_rng(5)
    advancing = [numba_pool.fractional_max_pool2d(x, 2, 12, return_indices=True, seed=generator)[1] for _ in range(2)]
    assert not np.array_equal(*advancing)
    np.testing.assert_array_equal(numba_pool.fractional_max_pool2d(x, 2, 12, return_indices=True, seed=np.random.default_rng(5))[1], advancing[0])
    # a plane's windows depend on its position only: the first image alone, channels-last, unbatched
    np.testing.assert_array_equal(numba_pool.fractional_max_pool2d(x[:1], 2, 12, return_indices=True, seed=7)[1], first[:1])
    last = numba_pool.fractional_max_pool2d(np.moveaxis(x, 1, -1), 2, 12, return_indices=True, seed=7, channels_last=True)[1]
    np.testing.assert_array_equal(np.moveaxis(last, -1, 1), first)
    np.testing.assert_array_equal(numba_pool.fractional_max_pool2d(x[0], 2, 12, return_indices=True, seed=7)[1], first[0])


@pytest.mark.parallel_kernels  # thread counts
def test_seeded_windows_do_not_depend_on_the_thread_count():
    x = np.random.default_rng(1).random((4, 8, 24, 24))
    expected = numba_pool.fractional_max_pool2d(x, 3, 10, return_indices=True, seed=3)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        assert_same_results(numba_pool.fractional_max_pool2d(x, 3, 10, return_indices=True, seed=3), expected)
    finally:
        numba.set_num_threads(threads)


@pytest.mark.backends("cuda", "dask")
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_other_backends_draw_the_cpus_windows(backend, dims):
    rng = np.random.default_rng(dims)
    case = random_fractional_case(rng, dims, small=True)
    x = case.to_user(random_values(rng, (case.batch, case.channels) + case.spatial, case.dtype))
    for seed in (0, 11):
        expected = pool(x, case, return_indices=True, seed=seed)
        assert_same_results(backend.get(pool(backend.put(x, "contiguous"), case, return_indices=True, seed=seed)), expected)


@pytest.mark.backends("cuda", "dask")
def test_samples_may_live_on_either_side(backend):
    rng = np.random.default_rng(6)
    x, samples = rng.standard_normal((2, 3, 7, 8)), rng.random((2, 3, 2))
    expected = numba_pool.fractional_max_pool2d(x, 2, 4, return_indices=True, _random_samples=samples)
    on_backend = backend.put(samples, "contiguous")
    assert_same_results(numba_pool.fractional_max_pool2d(x, 2, 4, return_indices=True, _random_samples=on_backend), expected)
    got = numba_pool.fractional_max_pool2d(backend.put(x, "contiguous"), 2, 4, return_indices=True, _random_samples=on_backend)
    assert_same_results(backend.get(got), expected)


def test_dask_chunking_changes_nothing():
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 4, 9, 10))
    expected = numba_pool.fractional_max_pool2d(x, 2, (6, 5), return_indices=True, seed=9)
    for chunks in ((1, 1, 9, 10), (2, 3, 4, 4), (5, 4, 9, 10)):
        got = numba_pool.fractional_max_pool2d(da.from_array(x, chunks=chunks), 2, (6, 5), return_indices=True, seed=9)
        assert_same_results(tuple(a.compute() for a in got), expected)
    samples = rng.random((5, 4, 2))
    lazy = numba_pool.fractional_max_pool2d(da.from_array(x, chunks=(2, 3, 4, 4)), 2, None, 0.6, _random_samples=samples)
    np.testing.assert_array_equal(lazy.compute(), numba_pool.fractional_max_pool2d(x, 2, None, 0.6, _random_samples=samples))
    generator = np.random.default_rng(4)
    lazy = numba_pool.fractional_max_pool2d(da.from_array(x, chunks=2), 2, 5, seed=generator)
    np.testing.assert_array_equal(lazy.compute(), numba_pool.fractional_max_pool2d(x, 2, 5, seed=np.random.default_rng(4)))
    with pytest.raises(ValueError, match="_random_samples"):
        numba_pool.fractional_max_pool2d(da.from_array(x, chunks=2), 2, 5, _random_samples=samples[:2])


def test_zero_size_batch_unbatched_and_out():
    x = np.ones((0, 2, 5, 5), np.float32)
    y, indices = numba_pool.fractional_max_pool2d(x, 2, 3, return_indices=True, seed=0)
    assert y.shape == indices.shape == (0, 2, 3, 3) and y.dtype == np.float32
    assert numba_pool.fractional_max_pool2d_backward(y, indices, x.shape).shape == x.shape
    assert numba_pool.fractional_max_pool2d(x, 2, 3, _random_samples=np.zeros((0, 2, 2))).shape == (0, 2, 3, 3)
    x = np.random.default_rng(0).random((2, 7, 7))
    samples = np.random.default_rng(1).random((1, 2, 2))
    expected = numba_pool.fractional_max_pool2d(x[np.newaxis], 2, 4, _random_samples=samples)[0]
    out = np.empty((2, 4, 4))
    assert numba_pool.fractional_max_pool2d(x, 2, 4, _random_samples=samples, out=out) is out
    np.testing.assert_array_equal(out, expected)


def test_output_ratio_follows_pytorchs_rule():
    x = np.zeros((1, 1, 7, 10))
    assert numba_pool.fractional_max_pool2d(x, 2, output_ratio=0.75, seed=0).shape == (1, 1, 5, 7)  # int(7 * .75), int(10 * .75)
    assert numba_pool.fractional_max_pool2d(x, 2, output_ratio=(0.5, 0.3), seed=0).shape == (1, 1, 3, 3)


X = np.zeros((2, 3, 8, 8))


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda f: f(X.astype(np.int32), 2, 4), TypeError, ["x", "int32"]),
        (lambda f: f(X, 9, 1), ValueError, ["kernel_size", "9"]),
        (lambda f: f(X, 0, 4), ValueError, ["kernel_size"]),
        (lambda f: f(X, 2, 8), ValueError, ["output_size", "input - kernel + 1", "7"]),
        (lambda f: f(X, 2, 0), ValueError, ["output_size"]),
        (lambda f: f(X, 2), ValueError, ["output_size", "output_ratio", "neither"]),
        (lambda f: f(X, 2, 4, 0.5), ValueError, ["output_size", "output_ratio", "both"]),
        (lambda f: f(X, 2, output_ratio=1.0), ValueError, ["output_ratio", "(0, 1)"]),
        (lambda f: f(X, 2, output_ratio=(0.5, 0.0)), ValueError, ["output_ratio"]),
        (lambda f: f(X, 2, output_ratio="half"), TypeError, ["output_ratio"]),
        (lambda f: f(X, 2, output_ratio=0.1), ValueError, ["output_ratio", "at least 1"]),
        (lambda f: f(X, 3, output_ratio=0.95), ValueError, ["output_ratio", "too large"]),
        (lambda f: f(X, 2, 4, _random_samples=np.zeros((2, 3, 3))), ValueError, ["_random_samples", "(2, 3, 2)"]),
        (lambda f: f(X, 2, 4, _random_samples=np.zeros((1, 3, 2))), ValueError, ["_random_samples", "(1, 3, 2)"]),
        (lambda f: f(X, 2, 4, _random_samples=np.ones((2, 3, 2))), ValueError, ["_random_samples", "[0, 1)"]),
        (lambda f: f(X, 2, 4, _random_samples=np.full((2, 3, 2), -0.5)), ValueError, ["_random_samples", "[0, 1)"]),
        (lambda f: f(X, 2, 4, _random_samples=np.full((2, 3, 2), np.nan)), ValueError, ["_random_samples", "NaN"]),
        (lambda f: f(X.astype(np.float32), 2, 4, _random_samples=np.full((2, 3, 2), 1 - 1e-12)), ValueError, ["_random_samples", "float32"]),
        (lambda f: f(X, 2, 4, _random_samples=np.zeros((2, 3, 2), np.int64)), TypeError, ["_random_samples", "int64"]),
        (lambda f: f(X, 2, 4, _random_samples=np.zeros((2, 3, 2)), seed=1), ValueError, ["_random_samples", "seed"]),
        (lambda f: f(X, 2, 4, seed=-1), ValueError, ["seed"]),
        (lambda f: f(X, 2, 4, seed="a"), TypeError, ["seed"]),
        (lambda f: f(X, 2, 4, return_indices=1), TypeError, ["return_indices"]),
    ],
)
def test_bad_arguments_name_what_is_wrong(call, error, words):
    with pytest.raises(error) as raised:
        call(numba_pool.fractional_max_pool2d)
    message = str(raised.value)
    assert message.startswith("fractional_max_pool2d") and all(word in message for word in words), message


def test_a_refused_call_does_not_advance_the_generator():
    generator = np.random.default_rng(0)
    with pytest.raises(ValueError):
        numba_pool.fractional_max_pool2d(X, 2, 8, seed=generator)
    assert generator.integers(1000) == np.random.default_rng(0).integers(1000)


def test_layer_replays_its_seed_and_routes_gradients():
    x = np.random.default_rng(3).random((2, 3, 9, 9))
    first, second = numba_pool.FractionalMaxPool2d(2, 5, seed=4), numba_pool.FractionalMaxPool2d(2, 5, seed=4)
    y = first(x)
    np.testing.assert_array_equal(second(x), y)
    grad = np.ones_like(y)
    assert first.backward(grad).sum() == grad.sum()
    samples = np.random.default_rng(0).random((2, 3, 2))
    fixed = numba_pool.FractionalMaxPool2d(2, output_ratio=0.6, _random_samples=samples)
    np.testing.assert_array_equal(fixed(x), numba_pool.fractional_max_pool2d(x, 2, None, 0.6, _random_samples=samples))


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_torch_module_gradcheck_and_pytorchs_module(dims):
    torch = pytest.importorskip("torch")
    import numba_pool.torch as nt

    shape = (2, 2) + (6,) * dims
    x = torch.rand(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(dims)).requires_grad_()
    samples = torch.rand((2, 2, dims), dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    module = getattr(nt, f"FractionalMaxPool{dims}d")(2, 4, _random_samples=samples)
    assert torch.autograd.gradcheck(module, (x,))
    assert torch.autograd.gradgradcheck(module, (x,))
    if dims > 1:
        theirs = getattr(torch.nn, f"FractionalMaxPool{dims}d")(2, 4, _random_samples=samples)
        torch.testing.assert_close(module(x), theirs(x), rtol=0, atol=0)
    seeded = getattr(nt, f"FractionalMaxPool{dims}d")(2, output_ratio=0.7, seed=1)
    seeded(x).sum().backward()


def test_check_line_passes_on_the_cpu():
    rng = np.random.default_rng(0)
    for _ in range(3):
        fractional_pool.SPEC.selfcheck.check(numba_pool, rng, lambda a: a, lambda a: a)


# --------------------------------------------------------------------------- fractional average pooling (TensorFlow's)


def random_avg_case(rng, dims, backend):
    case = random_fractional_case(rng, dims, small=backend.name == "cuda", views=backend_views(backend))
    output = tuple(int(rng.integers(1, length + 1)) for length in case.spatial)
    return case, output, bool(rng.random() < 0.5), bool(rng.random() < 0.5), int(rng.integers(2**40))


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", range(6))
def test_avg_forward_and_backward_match_the_reference(backend, dims, seed):
    rng = np.random.default_rng([80 + dims, seed])
    case, output, pseudo_random, overlapping, draw_seed = random_avg_case(rng, dims, backend)
    x = random_values(rng, (case.batch, case.channels) + case.spatial, case.dtype, special=False)
    sequences = fractional_pool.avg_sequences(case.spatial, output, draw_seed, pseudo_random)
    options = dict(channels_last=case.channels_last)
    arguments = (pseudo_random, overlapping)
    y = backend.get(op("fractional_avg_pool", dims)(backend.put(case.to_user(x), case.view), output, None, *arguments, draw_seed, **options))
    assert y.dtype == x.dtype
    assert_matches(case.from_user(y), reference.fractional_avg_pool(x, sequences, overlapping), err_msg=str(case))
    grad = rng.standard_normal(y.shape).astype(case.dtype)
    user_shape = case.to_user(x).shape
    got = op("fractional_avg_pool", dims, "backward")(backend.put(grad, "contiguous"), user_shape, draw_seed, *arguments, **options)
    got = backend.get(got)
    assert got.shape == user_shape and got.dtype == grad.dtype
    expected = reference.fractional_avg_pool_backward(case.from_user(grad), case.spatial, sequences, overlapping)
    assert_matches(case.from_user(got), expected, err_msg=str(case))


def test_avg_hand_computed_tensorflow_windows():
    # L = 10, 4 outputs, u = 0.3: alpha = 2.5, TensorFlow's a_i = ceil(2.5 * (i + 0.3)) = 1, 4, 6, 9, 11
    sequence = fractional_pool.pseudo_random_sequence(10, 4, 0.3)
    np.testing.assert_array_equal(sequence, [0, 3, 5, 8, 10])
    x = np.arange(1.0, 11.0).reshape(1, 1, 10)
    layout = numba_pool._spec.layout_of(x.shape, 1, False, "x", "test")
    plain = fractional_pool.avg_run(numba_pool.backends.cpu, x, layout, (sequence,), False)
    np.testing.assert_allclose(plain, [[[2.0, 4.5, 7.0, 9.5]]])  # [1, 2, 3], [4, 5], [6, 7, 8], [9, 10]
    overlapping = fractional_pool.avg_run(numba_pool.backends.cpu, x, layout, (sequence,), True)
    np.testing.assert_allclose(overlapping, [[[2.5, 5.0, 7.5, 9.5]]])  # [1..4], [4..6], [6..9], [9, 10] (clipped)
    np.testing.assert_allclose(reference.fractional_avg_pool(x, (sequence,), True), overlapping)
    spread = reference.fractional_avg_pool_backward(np.ones((1, 1, 4)), (10,), (sequence,), True)
    quarter, third, half = 0.25, 1 / 3, 0.5
    expected = [quarter, quarter, quarter, quarter + third, third, third + quarter, quarter, quarter, quarter + half, half]
    np.testing.assert_allclose(spread[0, 0], expected)
    assert fractional_pool.pseudo_random_limit(10, 4) == pytest.approx(0.6)  # min((2 + 2) / 2.5 - 1, (11 - 2) / 2.5 - 3)


@pytest.mark.parametrize("pseudo_random", [False, True])
def test_avg_sequences_have_steps_of_k_or_k_plus_one(pseudo_random):
    rng = np.random.default_rng(int(pseudo_random))
    for _ in range(300):
        length = int(rng.integers(1, 60))
        count = int(rng.integers(1, length + 1))
        sequence = fractional_pool.pooling_sequence(length, count, int(rng.integers(2**40)), int(rng.integers(3)), pseudo_random)
        steps = np.diff(sequence)
        k = length // count
        assert sequence[0] == 0 and sequence[-1] == length and len(sequence) == count + 1
        assert set(steps.tolist()) <= {k, k + 1} and (steps == k + 1).sum() == length % count, (length, count, sequence)


def test_avg_random_sequences_place_long_steps_uniformly():
    counts = np.zeros(5)
    for seed in range(4000):
        counts += np.diff(fractional_pool.pooling_sequence(12, 5, seed, 0, False)) == 3  # two steps of 3 among five
    np.testing.assert_allclose(counts / 4000, 0.4, atol=0.04)


def test_avg_seeds_replay_and_differ():
    x = np.random.default_rng(0).random((2, 3, 17, 19))
    first = numba_pool.fractional_avg_pool2d(x, (7, 8), seed=3)
    np.testing.assert_array_equal(numba_pool.fractional_avg_pool2d(x, (7, 8), seed=3), first)
    assert not np.array_equal(numba_pool.fractional_avg_pool2d(x, (7, 8), seed=4), first)
    assert not np.array_equal(*(numba_pool.fractional_avg_pool2d(x, (7, 8)) for _ in range(2)))
    np.testing.assert_array_equal(numba_pool.fractional_avg_pool2d(x[1], (7, 8), seed=3), first[1])


def test_avg_backward_is_the_adjoint_of_the_forward():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 11, 9))
    for pseudo_random, overlapping in ((False, False), (True, True), (False, True)):
        y = numba_pool.fractional_avg_pool2d(x, (5, 4), None, pseudo_random, overlapping, 8)
        g = rng.standard_normal(y.shape)
        adjoint = numba_pool.fractional_avg_pool2d_backward(g, x.shape, 8, pseudo_random, overlapping)
        assert np.vdot(y, g) == pytest.approx(np.vdot(x, adjoint), rel=1e-12)


def test_avg_overlapping_windows_at_full_output_size_are_pairs():
    x = np.arange(4.0).reshape(1, 1, 4)
    np.testing.assert_allclose(numba_pool.fractional_avg_pool1d(x, 4, overlapping=True, seed=0), [[[0.5, 1.5, 2.5, 3.0]]])
    np.testing.assert_array_equal(numba_pool.fractional_avg_pool1d(x, 4, seed=0), x)


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: numba_pool.fractional_avg_pool2d(X), ValueError, ["output_size", "output_ratio", "neither"]),
        (lambda: numba_pool.fractional_avg_pool2d(X, 4, 0.5), ValueError, ["both"]),
        (lambda: numba_pool.fractional_avg_pool2d(X, 9), ValueError, ["output_size", "(9, 9)", "(8, 8)"]),
        (lambda: numba_pool.fractional_avg_pool2d(X, output_ratio=1.5), ValueError, ["output_ratio", "(0, 1)"]),
        (lambda: numba_pool.fractional_avg_pool2d(X, 4, pseudo_random=1), TypeError, ["pseudo_random"]),
        (lambda: numba_pool.fractional_avg_pool2d(X.astype(np.int8), 4), TypeError, ["x", "int8"]),
        (lambda: numba_pool.fractional_avg_pool2d_backward(np.ones((2, 3, 4, 4)), X.shape, None), TypeError, ["seed", "int"]),
        (lambda: numba_pool.fractional_avg_pool2d_backward(np.ones((2, 3, 9, 4)), X.shape, 1), ValueError, ["grad_output"]),
    ],
)
def test_avg_bad_arguments_name_what_is_wrong(call, error, words):
    with pytest.raises(error) as raised:
        call()
    message = str(raised.value)
    assert message.startswith("fractional_avg_pool2d") and all(word in message for word in words), message


def test_avg_dask_chunking_and_layer():
    da = pytest.importorskip("dask.array")
    x = np.random.default_rng(1).standard_normal((4, 5, 9, 10))
    expected = numba_pool.fractional_avg_pool2d(x, (4, 6), None, True, True, 12)
    for chunks in ((1, 2, 3, 4), (4, 5, 9, 10)):
        lazy = numba_pool.fractional_avg_pool2d(da.from_array(x, chunks=chunks), (4, 6), None, True, True, 12)
        np.testing.assert_array_equal(lazy.compute(), expected)
    grad = np.ones_like(expected)
    lazy_grad = numba_pool.fractional_avg_pool2d_backward(da.from_array(grad, chunks=2), x.shape, 12, True, True)
    np.testing.assert_array_equal(lazy_grad.compute(), numba_pool.fractional_avg_pool2d_backward(grad, x.shape, 12, True, True))
    layer, twin = numba_pool.FractionalAvgPool2d((4, 6), seed=2), numba_pool.FractionalAvgPool2d((4, 6), seed=2)
    y = layer(x)
    np.testing.assert_array_equal(twin(x), y)
    assert layer.backward(np.ones_like(y)).sum() == pytest.approx(y.size)


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_avg_torch_module_gradcheck(dims):
    torch = pytest.importorskip("torch")
    import numba_pool.torch as nt

    x = torch.rand((2, 2) + (6,) * dims, dtype=torch.float64, generator=torch.Generator().manual_seed(dims)).requires_grad_()
    # a module built with the same seed replays the same windows, so every call sees one function
    module = lambda t: getattr(nt, f"FractionalAvgPool{dims}d")(4, None, True, True, seed=5)(t)  # noqa: E731
    assert torch.autograd.gradcheck(module, (x,))
    assert torch.autograd.gradgradcheck(module, (x,))


def test_avg_check_line_passes_on_the_cpu():
    rng = np.random.default_rng(0)
    for _ in range(3):
        fractional_pool.AVG_SPEC.selfcheck.check(numba_pool, rng, lambda a: a, lambda a: a)


def test_seeded_fractional_max_pooling_of_ml_dtypes_bfloat16():
    """np.finfo does not know ml_dtypes' bfloat16; the seeded samples are drawn for it all the same."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = np.random.default_rng(5).standard_normal((2, 3, 9, 8)).astype(ml_dtypes.bfloat16)
    values, indices = numba_pool.fractional_max_pool2d(x, 2, output_size=(4, 5), seed=3, return_indices=True)
    assert values.dtype == x.dtype and values.shape == (2, 3, 4, 5)
    planes = x.reshape(2, 3, -1)
    np.testing.assert_array_equal(values, np.take_along_axis(planes, indices.reshape(2, 3, -1), -1).reshape(values.shape))
    layer = numba_pool.FractionalMaxPool2d(2, output_size=(4, 5), seed=3)  # draws its windows from a generator
    assert layer(x).dtype == x.dtype


def test_fractional_avg_layer_backward_follows_the_last_forward_that_succeeded():
    """The layer draws a new seed per forward; one that raises must not change the windows backward uses."""
    x = np.random.default_rng(2).standard_normal((1, 2, 40, 40))
    layer = numba_pool.FractionalAvgPool2d(output_size=13, seed=11)  # 13 places per axis for the longer step
    y = layer(x)
    expected = layer.backward(np.ones_like(y))
    with pytest.raises(ValueError):
        layer(x[..., :2, :2])  # output_size 13 > 2: refused after the layer drew its next seed
    np.testing.assert_array_equal(layer.backward(np.ones_like(y)), expected)
