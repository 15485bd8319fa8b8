"""numba_pool.torch: autograd-checked modules that can replace PyTorch's own."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the PyTorch adapter needs torch (CI installs torch==2.13.0)")

import numba_pool.torch as nt  # noqa: E402

SHAPES = {1: (2, 3, 11), 2: (2, 3, 9, 8), 3: (2, 2, 6, 5, 7)}


def random_input(dims, positive=False, channels_last=False):
    generator = torch.Generator().manual_seed(dims)
    x = torch.randn(SHAPES[dims], dtype=torch.float64, generator=generator)
    x = x.abs() + 0.1 if positive else x
    if channels_last and dims == 2:
        x = x.to(memory_format=torch.channels_last)
    return x.requires_grad_()


MODULES = [
    ("MaxPool", lambda d: dict(kernel_size=3, stride=2, padding=1)),
    ("AvgPool", lambda d: dict(kernel_size=2, stride=1, padding=1, count_include_pad=False)),
    ("GlobalAvgPool", lambda d: {}),
    ("GlobalMaxPool", lambda d: dict(keepdims=True)),
    ("AdaptiveAvgPool", lambda d: dict(output_size=(3,) * d)),
    ("AdaptiveMaxPool", lambda d: dict(output_size=(2,) * d)),
]


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("family, options", MODULES, ids=[name for name, _ in MODULES])
def test_gradcheck(family, options, dims):
    module = getattr(nt, f"{family}{dims}d")(**options(dims))
    assert torch.autograd.gradcheck(module, (random_input(dims),))


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_gradcheck_stochastic_training_and_inference(dims):
    # Training: a module built with the same seed replays the same picks, so every gradcheck call sees one function.
    assert torch.autograd.gradcheck(lambda x: getattr(nt, f"StochasticPool{dims}d")(2, seed=5)(x), (random_input(dims),))
    inference = getattr(nt, f"StochasticPool{dims}d")(2).eval()  # smooth where every input is positive
    assert torch.autograd.gradcheck(inference, (random_input(dims, positive=True),))


@pytest.mark.parametrize("channels_last", [False, True])
def test_same_results_and_gradients_as_pytorch(channels_last):
    functional = torch.nn.functional
    pairs = [
        (nt.MaxPool2d(3, 2, 1), lambda x: functional.max_pool2d(x, 3, 2, 1)),
        (nt.AvgPool2d(3, 2, 1, count_include_pad=False), lambda x: functional.avg_pool2d(x, 3, 2, 1, count_include_pad=False)),
        (nt.AdaptiveAvgPool2d((4, 3)), lambda x: functional.adaptive_avg_pool2d(x, (4, 3))),
        (nt.AdaptiveMaxPool2d((4, 3)), lambda x: functional.adaptive_max_pool2d(x, (4, 3))),
        (nt.GlobalAvgPool2d(keepdims=True), lambda x: functional.adaptive_avg_pool2d(x, 1)),
    ]
    for ours, theirs in pairs:
        x = random_input(2, channels_last=channels_last)
        ours_y, theirs_y = ours(x), theirs(x)
        torch.testing.assert_close(ours_y, theirs_y)
        if channels_last and isinstance(ours, (nt.MaxPool2d, nt.AvgPool2d)):  # adaptive outputs are channels-first
            assert ours_y.is_contiguous(memory_format=torch.channels_last)  # kept the input's memory format
        weights = torch.randn(ours_y.shape, dtype=torch.float64)
        (ours_grad,) = torch.autograd.grad((ours_y * weights).sum(), x)
        (theirs_grad,) = torch.autograd.grad((theirs_y * weights).sum(), x)
        torch.testing.assert_close(ours_grad, theirs_grad)


def test_a_model_trains_with_the_modules_swapped_in():
    torch.manual_seed(0)

    def model(pool):
        return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), pool, torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 3))

    ours, theirs = model(nt.MaxPool2d(2)), model(torch.nn.MaxPool2d(2))
    theirs.load_state_dict(ours.state_dict())
    x, labels = torch.randn(6, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    for network in (ours, theirs):
        torch.nn.functional.cross_entropy(network(x), labels).backward()
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a.grad, b.grad)


def test_stochastic_module_follows_train_and_eval():
    x = random_input(2, positive=True)
    module = nt.StochasticPool2d(2, seed=0)
    picks = module(x)
    window_values = x.detach().unfold(2, 2, 2).unfold(3, 2, 2).reshape(*picks.shape, 4)
    assert bool((window_values == picks.detach()[..., None]).any(-1).all())  # each output is one of its window's values
    expected = (window_values**2).sum(-1) / window_values.sum(-1)
    torch.testing.assert_close(module.eval()(x), expected)


def test_reuse_buffers_is_refused_by_torch_modules():
    with pytest.raises(TypeError, match="MaxPool2d: reuse_buffers is an option of the NumPy layers only"):
        nt.MaxPool2d(2, reuse_buffers=True)


def test_repr_shows_the_settings():
    assert repr(nt.MaxPool2d(3, 2)).startswith("MaxPool2d(channels_last=False, kernel_size=3, stride=2")


def test_bad_arguments_are_the_layers_errors():
    with pytest.raises(ValueError, match="padding must be at most half"):
        nt.AvgPool2d(2, padding=2)(random_input(2))
    with pytest.raises(TypeError, match="accepted dtypes are float16, float32 or float64"):
        nt.AvgPool2d(2)(torch.ones(1, 1, 4, 4, dtype=torch.int32))
    assert np.isfinite(nt.MaxPool2d(2)(torch.ones(1, 1, 4, 4)).numpy()).all()
