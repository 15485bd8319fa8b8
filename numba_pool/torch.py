"""PyTorch modules that run numba_pool's kernels, with autograd (``pip install "numba-pool[torch]"``).

Each module (``MaxPool2d``, ``AvgPool2d``, ``StochasticPool2d``,
``GlobalAvgPool2d``, ``GlobalMaxPool2d``, ``AdaptiveAvgPool2d``,
``AdaptiveMaxPool2d``, for 1d, 2d and 3d) takes the arguments of the numba_pool
layer of the same name (see :mod:`numba_pool.layers`) and can replace the
PyTorch module in a model. CPU tensors reach the kernels as zero-copy NumPy
views (a ``channels_last`` tensor is pooled in its own memory format); CUDA
tensors go to the CUDA kernels through ``__cuda_array_interface__`` and come
back as CUDA tensors. ``StochasticPool2d`` samples in ``train()`` mode and
returns expected values in ``eval()`` mode, each with its exact gradient.

>>> import torch
>>> from numba_pool.torch import MaxPool2d
>>> x = torch.arange(16.0).reshape(1, 1, 4, 4).requires_grad_()
>>> y = MaxPool2d(2)(x)
>>> y.sum().backward()
>>> x.grad[0, 0]
tensor([[0., 0., 0., 0.],
        [0., 1., 0., 1.],
        [0., 0., 0., 0.],
        [0., 1., 0., 1.]])
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from . import layers

__all__ = [
    f"{family}{dims}d"
    for family in (
        "MaxPool", "AvgPool", "StochasticPool", "GlobalAvgPool", "GlobalMaxPool", "AdaptiveAvgPool", "AdaptiveMaxPool",
    )
    for dims in (1, 2, 3)
]


def _for_kernels(tensor: torch.Tensor):
    """What numba_pool's functions take: a NumPy view of a CPU tensor, or the CUDA tensor itself."""
    tensor = tensor.detach()
    return tensor if tensor.is_cuda else tensor.numpy()


def _as_tensor(array) -> torch.Tensor:
    return array if isinstance(array, torch.Tensor) else torch.from_numpy(np.asarray(array))


class _ThroughLayer(torch.autograd.Function):
    """Forward and backward of one call of a numba_pool layer (a fresh copy per call holds its saved state)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, layer) -> torch.Tensor:
        ctx.layer = layer
        return _as_tensor(layer.forward(_for_kernels(x)))

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return _as_tensor(ctx.layer.backward(_for_kernels(grad_output))), None


class _Pool(torch.nn.Module):
    """A torch module around a numba_pool layer: the layer holds the settings, a copy runs each call."""

    layer_class: type

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()
        self.layer = self.layer_class(*args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layer = copy.copy(self.layer)  # shares the settings (and a stochastic layer's generator), not the saved state
        if hasattr(layer, "train"):
            layer.train(self.training)
        return _ThroughLayer.apply(x, layer)

    def extra_repr(self) -> str:
        settings = {k: v for k, v in vars(self.layer).items() if not k.startswith("_") and k != "training"}
        return ", ".join(f"{k}={v!r}" for k, v in settings.items())


def _module(family: str, dims: int) -> type:
    layer_class = getattr(layers, f"{family}{dims}d")
    doc = (
        f"``torch.nn.Module`` running numba_pool's ``{family}{dims}d`` layer; takes the same arguments.\n\n"
        + (layer_class.__doc__ or "")
    )
    return type(f"{family}{dims}d", (_Pool,), {"layer_class": layer_class, "__doc__": doc, "__module__": __name__})


MaxPool1d, MaxPool2d, MaxPool3d = (_module("MaxPool", d) for d in (1, 2, 3))
AvgPool1d, AvgPool2d, AvgPool3d = (_module("AvgPool", d) for d in (1, 2, 3))
StochasticPool1d, StochasticPool2d, StochasticPool3d = (_module("StochasticPool", d) for d in (1, 2, 3))
GlobalAvgPool1d, GlobalAvgPool2d, GlobalAvgPool3d = (_module("GlobalAvgPool", d) for d in (1, 2, 3))
GlobalMaxPool1d, GlobalMaxPool2d, GlobalMaxPool3d = (_module("GlobalMaxPool", d) for d in (1, 2, 3))
AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveAvgPool3d = (_module("AdaptiveAvgPool", d) for d in (1, 2, 3))
AdaptiveMaxPool1d, AdaptiveMaxPool2d, AdaptiveMaxPool3d = (_module("AdaptiveMaxPool", d) for d in (1, 2, 3))
