"""When PyTorch is installed, compare with torch.nn.functional (forward and autograd backward)."""

import numpy as np
import pytest

import numba_pool
from cases import random_case, random_values
from helpers import op

torch = pytest.importorskip("torch")
F = torch.nn.functional


def torch_layout(case, x):
    """A channels-first batched tensor of the reference array (torch has no channels_last for 1-D/3-D pooling)."""
    return torch.from_numpy(np.ascontiguousarray(x))


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", range(15))
def test_max_pool_matches_torch(dims, seed):
    rng = np.random.default_rng([30 + dims, seed])
    case = random_case(rng, dims)
    x = random_values(rng, (case.batch, case.channels) + case.spatial, case.dtype, special=False)  # torch's NaN rule differs
    x_torch = torch_layout(case, x).requires_grad_(True)
    torch_pool = getattr(F, f"max_pool{dims}d")
    y_torch, indices_torch = torch_pool(x_torch, case.kernel, case.stride, case.padding, case.dilation, case.ceil_mode, True)
    y, indices = op("max_pool", dims)(
        case.to_user(x), case.kernel, case.stride, case.padding, case.dilation, case.ceil_mode, True,
        channels_last=case.channels_last,
    )
    np.testing.assert_array_equal(case.from_user(y), y_torch.detach().numpy())
    np.testing.assert_array_equal(case.from_user(indices), indices_torch.numpy())

    if case.batch:
        grad = rng.standard_normal(y_torch.shape).astype(case.dtype)
        y_torch.backward(torch.from_numpy(grad))
        grad_input = op("max_pool", dims, "backward")(
            case.to_user(grad), indices, case.user_shape(case.spatial), channels_last=case.channels_last
        )
        np.testing.assert_allclose(case.from_user(grad_input), x_torch.grad.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("seed", range(15))
def test_avg_pool_matches_torch(dims, seed):
    rng = np.random.default_rng([40 + dims, seed])
    case = random_case(rng, dims, dilation=False)
    while dims == 3 and min(length - k for length, k in zip(case.spatial, case.kernel)) < 0:
        case = random_case(rng, dims, dilation=False)  # torch's avg_pool3d also wants the unpadded input >= kernel
    if dims == 1:  # torch's avg_pool1d has no divisor_override
        case = type(case)(**{**case.__dict__, "divisor_override": None})
    x = random_values(rng, (case.batch, case.channels) + case.spatial, case.dtype, special=False)
    x_torch = torch_layout(case, x).requires_grad_(True)
    extra = {} if dims == 1 else {"divisor_override": case.divisor_override}
    y_torch = getattr(F, f"avg_pool{dims}d")(
        x_torch, case.kernel, case.stride, case.padding, case.ceil_mode, case.count_include_pad, **extra
    )
    arguments = (case.kernel, case.stride, case.padding, case.ceil_mode, case.count_include_pad, case.divisor_override)
    y = op("avg_pool", dims)(case.to_user(x), *arguments, channels_last=case.channels_last)
    np.testing.assert_allclose(case.from_user(y), y_torch.detach().numpy(), rtol=1e-5, atol=1e-6)

    if case.batch:
        grad = rng.standard_normal(y_torch.shape).astype(case.dtype)
        y_torch.backward(torch.from_numpy(grad))
        grad_input = op("avg_pool", dims, "backward")(
            case.to_user(grad), case.user_shape(case.spatial), *arguments, channels_last=case.channels_last
        )
        np.testing.assert_allclose(case.from_user(grad_input), x_torch.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_channels_last_tensor_memory_runs_as_is():
    """A channels_last torch tensor's NumPy view, read as NHWC, matches torch's result."""
    x = torch.randn(2, 5, 9, 7).to(memory_format=torch.channels_last)
    nhwc = x.permute(0, 2, 3, 1).numpy()  # a zero-copy view
    y = numba_pool.max_pool2d(nhwc, 3, 2, 1, channels_last=True)
    np.testing.assert_array_equal(y.transpose(0, 3, 1, 2), F.max_pool2d(x, 3, 2, 1).numpy())
