"""numba_pool.torch beyond first derivatives: double backward, saved-tensor checks, memory formats, torch.func, autocast."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the PyTorch adapter needs torch (CI installs torch==2.13.0)")

import numba_pool.torch as nt  # noqa: E402

F = torch.nn.functional
# Small: gradgradcheck differentiates numerically, two passes per element of the input and the gradient.
SHAPES = {1: (2, 3, 11), 2: (2, 2, 7, 6), 3: (2, 2, 5, 4, 5)}
CHANNELS_LAST = {2: torch.channels_last, 3: torch.channels_last_3d}


def random_input(dims, positive=False, seed=0):
    generator = torch.Generator().manual_seed(seed + dims)
    x = torch.randn(SHAPES[dims], dtype=torch.float64, generator=generator)
    return (x.abs() + 0.1 if positive else x).requires_grad_()


def channels_last(x):
    """x with channels innermost in memory (a transposed tensor for 1-D, as PyTorch has no 1-D format)."""
    if x.dim() == 3:
        return x.detach().transpose(1, 2).contiguous().transpose(1, 2).requires_grad_()
    return x.detach().contiguous(memory_format=CHANNELS_LAST[x.dim() - 2]).requires_grad_()


# family, our module's arguments, the torch.nn.functional equivalent (None: PyTorch has none)
FAMILIES = {
    "MaxPool": (dict(kernel_size=3, stride=2, padding=1), lambda d, x: getattr(F, f"max_pool{d}d")(x, 3, 2, 1)),
    "AvgPool": (
        dict(kernel_size=2, stride=1, padding=1, count_include_pad=False),
        lambda d, x: getattr(F, f"avg_pool{d}d")(x, 2, 1, 1, count_include_pad=False),
    ),
    "GlobalAvgPool": (dict(keepdims=True), lambda d, x: getattr(F, f"adaptive_avg_pool{d}d")(x, 1)),
    "GlobalMaxPool": (dict(keepdims=True), lambda d, x: getattr(F, f"adaptive_max_pool{d}d")(x, 1)),
    "AdaptiveAvgPool": (dict(output_size=3), lambda d, x: getattr(F, f"adaptive_avg_pool{d}d")(x, 3)),
    "AdaptiveMaxPool": (dict(output_size=2), lambda d, x: getattr(F, f"adaptive_max_pool{d}d")(x, 2)),
}
WITH_TORCH_COUNTERPART = list(FAMILIES)


def ours(family, dims, **extra):
    return getattr(nt, f"{family}{dims}d")(**{**FAMILIES[family][0], **extra})


def theirs(family, dims):
    return lambda x: FAMILIES[family][1](dims, x)


# --------------------------------------------------------------------------- double backward


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("family", WITH_TORCH_COUNTERPART)
def test_gradgradcheck(family, dims):
    assert torch.autograd.gradgradcheck(ours(family, dims), (random_input(dims),))


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_gradgradcheck_global_pooling_without_keepdims(dims):
    for family in ("GlobalAvgPool", "GlobalMaxPool"):
        assert torch.autograd.gradgradcheck(ours(family, dims, keepdims=False), (random_input(dims),))


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_gradgradcheck_stochastic_training(dims):
    # A module built with the same seed replays the same picks, so every call sees one function.
    module = lambda x: getattr(nt, f"StochasticPool{dims}d")(2, seed=5)(x)  # noqa: E731
    assert torch.autograd.gradgradcheck(module, (random_input(dims),))


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_gradgradcheck_stochastic_inference(dims):
    module = getattr(nt, f"StochasticPool{dims}d")(3, stride=2, padding=1).eval()
    assert torch.autograd.gradgradcheck(module, (random_input(dims, positive=True),))  # weighted windows
    assert torch.autograd.gradgradcheck(module, (-random_input(dims, positive=True).detach().requires_grad_(),))  # means


def test_stochastic_inference_gradient_with_and_without_graph_agree():
    # Without create_graph the kernel computes the gradient; with it, differentiable torch ops do.
    x, module = random_input(2), nt.StochasticPool2d(3, stride=2, padding=1).eval()
    weights = torch.randn(module(x).shape, dtype=torch.float64)
    (kernel,) = torch.autograd.grad((module(x) * weights).sum(), x)
    (graph,) = torch.autograd.grad((module(x) * weights).sum(), x, create_graph=True)
    assert graph.requires_grad
    torch.testing.assert_close(graph, kernel)


@pytest.mark.parametrize("family", ["MaxPool", "AvgPool"])
def test_gradient_of_a_gradient_is_attached_to_the_graph(family):
    # Reported: the gradient came back with requires_grad=False under create_graph=True.
    x = random_input(2)
    (grad,) = torch.autograd.grad((ours(family, 2)(x) ** 2).sum(), x, create_graph=True)
    assert grad.requires_grad


@pytest.mark.parametrize("family", ["MaxPool", "AvgPool", "AdaptiveAvgPool", "AdaptiveMaxPool"])
def test_gradient_penalty_matches_pytorch(family):
    torch.manual_seed(0)
    conv, after = torch.nn.Conv2d(3, 4, 3, padding=1).double(), None
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    grads = []
    for pool in (ours(family, 2), theirs(family, 2)):
        pooled = pool(conv(x))
        if after is None:
            after = torch.nn.Linear(pooled[0].numel(), 5).double()
        loss = after(pooled.flatten(1)).square().sum()
        (input_grad,) = torch.autograd.grad(loss, x, create_graph=True)
        penalty = loss + input_grad.square().sum()
        grads.append(torch.autograd.grad(penalty, (conv.weight, after.weight)))
    for ours_grad, theirs_grad in zip(*grads):
        torch.testing.assert_close(ours_grad, theirs_grad)


# --------------------------------------------------------------------------- saved tensors


def test_in_place_change_of_a_saved_input_is_reported():
    x = random_input(2, positive=True)
    a = x * 1.0
    y = nt.StochasticPool2d(2).eval()(a)
    a.mul_(-1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_indices_are_saved_through_autograd():
    y = nt.MaxPool2d(2)(random_input(2))
    (indices,) = y.grad_fn.saved_tensors  # autograd owns them (and frees them after backward)
    assert indices.dtype == torch.int64 and indices.shape == y.shape
    y.sum().backward()
    with pytest.raises(RuntimeError, match="after they have already been freed"):
        y.grad_fn.saved_tensors


# --------------------------------------------------------------------------- memory formats


def memory_of(y):
    channels_innermost = y.transpose(1, 2).is_contiguous() if y.dim() == 3 else y.is_contiguous(
        memory_format=CHANNELS_LAST[y.dim() - 2]
    )
    return y.is_contiguous(), channels_innermost


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("family", WITH_TORCH_COUNTERPART)
def test_output_memory_format_is_pytorchs(family, dims, layout):
    x = random_input(dims)
    x = channels_last(x) if layout == "channels_last" else x
    ours_y, theirs_y = ours(family, dims)(x), theirs(family, dims)(x)
    torch.testing.assert_close(ours_y, theirs_y)
    assert memory_of(ours_y) == memory_of(theirs_y)


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_stochastic_output_memory_follows_max_pooling(dims):
    x = channels_last(random_input(dims, positive=True))
    module = getattr(nt, f"StochasticPool{dims}d")(2, seed=1)
    expected = memory_of(ours("MaxPool", dims)(x))
    assert memory_of(module(x)) == expected
    assert memory_of(module.eval()(x)) == expected


# --------------------------------------------------------------------------- torch.func


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("family", WITH_TORCH_COUNTERPART)
def test_torch_func_grad_matches_pytorch(family, dims):
    x = random_input(dims).detach()
    weights = torch.randn(theirs(family, dims)(x).shape, dtype=torch.float64)
    ours_grad = torch.func.grad(lambda t: (ours(family, dims)(t) * weights).sum())(x)
    theirs_grad = torch.func.grad(lambda t: (theirs(family, dims)(t) * weights).sum())(x)
    torch.testing.assert_close(ours_grad, theirs_grad)


@pytest.mark.parametrize("family", WITH_TORCH_COUNTERPART)
def test_vmap_and_per_sample_gradients_match_pytorch(family):
    x = random_input(2).detach()  # vmapped over the batch: each sample is an unbatched (C, H, W) image
    ours_module, theirs_module = ours(family, 2), theirs(family, 2)
    torch.testing.assert_close(torch.func.vmap(ours_module)(x), theirs_module(x))
    stacked = torch.stack([x, 2 * x])  # vmapped over batches of images
    torch.testing.assert_close(torch.func.vmap(ours_module)(stacked), torch.stack([theirs_module(x), theirs_module(2 * x)]))

    def per_sample_gradients(module):
        return torch.func.vmap(torch.func.grad(lambda t: module(t).square().sum()))(x)

    torch.testing.assert_close(per_sample_gradients(ours_module), per_sample_gradients(theirs_module))


def test_torch_func_on_stochastic_pooling():
    x = random_input(2, positive=True).detach()
    inference = nt.StochasticPool2d(2).eval()
    (expected,) = torch.autograd.grad(inference(x.requires_grad_()).square().sum(), x)
    x = x.detach()
    torch.testing.assert_close(torch.func.grad(lambda t: inference(t).square().sum())(x), expected)
    per_sample = torch.func.vmap(torch.func.grad(lambda t: inference(t).square().sum()))(x)
    torch.testing.assert_close(per_sample, expected)
    # Training: modules built with the same seed pick the same elements.
    x_leaf = x.clone().requires_grad_()
    (expected,) = torch.autograd.grad(nt.StochasticPool2d(2, seed=3)(x_leaf).square().sum(), x_leaf)
    grad = torch.func.grad(lambda t: nt.StochasticPool2d(2, seed=3)(t).square().sum())(x)
    torch.testing.assert_close(grad, expected)


# --------------------------------------------------------------------------- autocast and dtypes


@pytest.mark.parametrize("family", ["MaxPool", "AvgPool", "AdaptiveAvgPool"])
def test_autocast_pools_in_float32_and_keeps_the_input_dtype(family):
    conv = torch.nn.Conv2d(3, 3, 3, padding=1)
    x = torch.randn(2, 3, 9, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features = conv(x)
        assert features.dtype == torch.bfloat16
        ours_y, theirs_y = ours(family, 2)(features), theirs(family, 2)(features)
    assert ours_y.dtype == theirs_y.dtype == torch.bfloat16
    torch.testing.assert_close(ours_y, theirs_y)
    ours_y.float().sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.dtype == torch.float32


@pytest.mark.parametrize("family", ["MaxPool", "AvgPool", "AdaptiveAvgPool"])
def test_bfloat16_outside_autocast_is_pooled_in_float32_and_rounded_once(family):
    x = torch.randn(2, 3, 9, 8).to(torch.bfloat16).requires_grad_()
    y = ours(family, 2)(x)
    assert y.dtype == torch.bfloat16
    assert torch.equal(y, ours(family, 2)(x.detach().float()).to(torch.bfloat16))
    assert torch.equal(y, theirs(family, 2)(x.detach()))  # PyTorch's bfloat16 pooling rounds once too
    y.float().sum().backward()
    assert x.grad.dtype == torch.bfloat16


def test_a_non_tensor_is_a_type_error():
    with pytest.raises(TypeError, match=r"^adaptive_avg_pool2d: x must be a torch.Tensor; got list"):
        nt.AdaptiveAvgPool2d(2)([[1.0]])
