"""PyTorch modules that run numba_pool's kernels, with autograd (``pip install "numba-pool[torch]"``).

Each module (one per layer of :mod:`numba_pool.layers`: ``MaxPool2d``,
``AvgPool2d``, ``StochasticPool2d``, ``LpPool2d`` and the rest, for 1d, 2d and
3d; ``__all__`` lists them) takes the arguments of the numba_pool
layer of the same name (see :mod:`numba_pool.layers`) and can replace the
PyTorch module in a model. CPU tensors reach the kernels as zero-copy NumPy
views (a ``channels_last`` tensor is pooled in its own memory format, and the
output has the memory format PyTorch's module gives); CUDA tensors go to the
CUDA kernels through ``__cuda_array_interface__`` and come back as CUDA
tensors. ``StochasticPool2d`` samples in ``train()`` mode and returns expected
values in ``eval()`` mode, each with its exact gradient.

Every module is differentiable any number of times (``create_graph=True``,
gradient penalties, ``torch.autograd.gradgradcheck``), works under
``torch.func.grad`` and ``torch.func.vmap`` (the mapped dimension joins the
batch), and saves what its backward reads through autograd, so an in-place
change of a saved tensor is reported as PyTorch reports it. Under
``torch.autocast`` a float16 or bfloat16 input is pooled in float32 and the
result cast back to the input's dtype (PyTorch's pooling keeps the input's
dtype too). Outside autocast float16 tensors are pooled as float16 (computed in
float32, each result rounded once to float16) and bfloat16 tensors, which
NumPy and ``__cuda_array_interface__`` cannot hold, are pooled in float32 and
each result rounded once to bfloat16 (round to nearest, ties to even: the same
results), on the CPU and on CUDA.

About 440 lines, all generic (no per-op code): the autograd Functions for the
three kinds of saved state (indices, input shape, input formula), double
backward, vmap, autocast and device handling, and the module factory.

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

# About 400 lines, one module on purpose: the autograd Functions (each one's backward applies another, for
# double backward), the vmap folding and the module generation share the tensor helpers, and keeping them
# together keeps ``import torch`` in one module. Nothing here names an op: modules come from ops.OPS.

from __future__ import annotations

import math

import numpy as np
import torch

from . import layers
from .ops import DIMENSIONALITIES, OPS, OpSpec


def _for_kernels(tensor: torch.Tensor):
    """What numba_pool's functions take: a NumPy view of a CPU tensor, or the CUDA tensor itself."""
    tensor = tensor.detach()
    return tensor if tensor.is_cuda else tensor.numpy()


def _as_tensor(array) -> torch.Tensor:
    return array if isinstance(array, torch.Tensor) else torch.from_numpy(np.asarray(array))


# Every Function below takes a call (``op``): what one layer call needs, the numba_pool functions and
# their arguments (numba_pool.ops._layer.RoutedCall, LinearCall, ...), from ``layer.autograd_call``.


# --------------------------------------------------------------------------- torch.func.vmap support
# Pooling treats images independently, so a vmapped dimension joins the batch dimension.


def _batch_first(tensor: torch.Tensor, dim, batch_size: int) -> torch.Tensor:
    return tensor.expand(batch_size, *tensor.shape) if dim is None else tensor.movedim(dim, 0)


class _Fold:
    """Folds a vmapped dim (first) into the batch dim of tensors of ``dims`` spatial dims, and back."""

    def __init__(self, batch_size: int, dims: int, sample_dim: int) -> None:
        self.batch_size, self.sample_is_batched = batch_size, sample_dim == dims + 2

    def fold(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.flatten(0, 1) if self.sample_is_batched else tensor

    def unfold(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.unflatten(0, (self.batch_size, -1)) if self.sample_is_batched else tensor

    def shape(self, sample_shape: tuple) -> tuple:
        if self.sample_is_batched:
            return (self.batch_size * sample_shape[0], *sample_shape[1:])
        return (self.batch_size, *sample_shape)


# --------------------------------------------------------------------------- autograd Functions


def _plain_apply():
    """Autograd's C-level apply and its functorch check, or None where this torch lacks them."""
    try:
        from torch._functorch.utils import unwrap_dead_wrappers

        base_apply, transforms_active = torch._C._FunctionBase.__dict__["apply"], torch._C._are_functorch_transforms_active
    except (ImportError, AttributeError, KeyError):
        return None
    return base_apply, transforms_active, unwrap_dead_wrappers


_PLAIN_APPLY = _plain_apply()


class _Function(torch.autograd.Function):
    """An autograd Function with a ctx-free forward and setup_context (as torch.func needs).

    For such Functions ``Function.apply`` binds the arguments to forward's signature on every call (tens of
    microseconds) only to fill in defaults; our forwards have none, so outside torch.func transforms
    the call goes straight to autograd's C-level apply, as ``Function.apply`` then does itself.
    """

    @classmethod
    def apply(cls, *args):
        if _PLAIN_APPLY is None or _PLAIN_APPLY[1]():
            return super().apply(*args)
        base_apply, _, unwrap_dead_wrappers = _PLAIN_APPLY
        return base_apply.__get__(None, cls)(*unwrap_dead_wrappers(args))


def _recorded(function: type[_Function], *args):
    """``function.apply(*args)``, or just its forward where autograd records nothing.

    In a backward pass without ``create_graph`` (grad mode off) and outside torch.func
    transforms, apply would only add its own cost (tens of microseconds) to a plain call.
    """
    if torch.is_grad_enabled() or _PLAIN_APPLY is None or _PLAIN_APPLY[1]():
        return function.apply(*args)
    return function.forward(*args)


class _RoutedPool(_Function):
    """(output, indices) of a routed op; the indices are returned so autograd can save them."""

    @staticmethod
    def forward(x, op):
        y, indices = op.pool(_for_kernels(x))
        return _as_tensor(y), _as_tensor(indices)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, op = inputs
        ctx.mark_non_differentiable(output[1])
        ctx.save_for_backward(output[1])
        ctx.set_materialize_grads(False)  # no zero tensor for the indices' gradient on every backward
        ctx.op, ctx.input_shape = op, tuple(x.shape)

    @staticmethod
    def backward(ctx, grad_output, _grad_indices):
        if grad_output is None:  # only the indices were used (they carry no gradient)
            return None, None
        (indices,) = ctx.saved_tensors
        return _recorded(_Scatter, grad_output, indices, ctx.op, ctx.input_shape), None

    @staticmethod
    def vmap(info, in_dims, x, op):
        x = _batch_first(x, in_dims[0], info.batch_size)
        fold = _Fold(info.batch_size, op.dims, x.dim() - 1)
        y, indices = _RoutedPool.apply(fold.fold(x), op)
        return (fold.unfold(y), fold.unfold(indices)), (0, 0)


class _Scatter(_Function):
    """Backward of a routed op: each output gradient goes to its input element (a linear map of grad_output)."""

    @staticmethod
    def forward(grad_output, indices, op, input_shape):
        return _as_tensor(op.scatter(_for_kernels(grad_output), _for_kernels(indices), input_shape))

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, indices, op, _ = inputs
        ctx.save_for_backward(indices)
        ctx.op = op

    @staticmethod
    def backward(ctx, grad_grad_input):
        # The adjoint of a scatter is the gather at the same indices (plain torch ops: differentiable again).
        (indices,) = ctx.saved_tensors
        return _gather(grad_grad_input, indices, ctx.op.dims, ctx.op.channels_last), None, None, None

    @staticmethod
    def vmap(info, in_dims, grad_output, indices, op, input_shape):
        grad_output = _batch_first(grad_output, in_dims[0], info.batch_size)
        indices = _batch_first(indices, in_dims[1], info.batch_size)
        fold = _Fold(info.batch_size, op.dims, len(input_shape))
        grad_input = _Scatter.apply(fold.fold(grad_output), fold.fold(indices), op, fold.shape(input_shape))
        return fold.unfold(grad_input), 0


def _gather(values: torch.Tensor, indices: torch.Tensor, dims: int, channels_last: bool) -> torch.Tensor:
    """values[..., indices] plane by plane: indices are flat positions within one spatial plane."""
    picked = torch.gather(_as_planes(values, dims, channels_last), 1, _as_planes(indices, dims, channels_last))
    if not channels_last:
        return picked.reshape(indices.shape)
    channels_first_shape = (*indices.shape[: -dims - 1], indices.shape[-1], *indices.shape[-dims - 1 : -1])
    return picked.reshape(channels_first_shape).movedim(-dims - 1, -1)


def _as_planes(tensor: torch.Tensor, dims: int, channels_last: bool) -> torch.Tensor:
    """(planes, positions): one row per (image, channel)."""
    if channels_last:
        tensor = tensor.movedim(-1, -dims - 1)
    return tensor.reshape(-1, math.prod(tensor.shape[-dims:]))


def _pooled(x: torch.Tensor, op) -> torch.Tensor:
    """The forward of an op whose only tensor argument is its input."""
    return _as_tensor(op.pool(_for_kernels(x)))


def _vmap_over_input(function, info, in_dims, x, op):
    """The vmap rule of a Function ``function(x, op)``: the mapped dim joins the batch."""
    x = _batch_first(x, in_dims[0], info.batch_size)
    fold = _Fold(info.batch_size, op.dims, x.dim() - 1)
    return fold.unfold(function.apply(fold.fold(x), op)), 0


class _LinearPool(_Function):
    @staticmethod
    def forward(x, op):
        return _pooled(x, op)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, op = inputs
        ctx.op, ctx.input_shape = op, tuple(x.shape)

    @staticmethod
    def backward(ctx, grad_output):
        return _recorded(_LinearAdjoint, grad_output, ctx.op, ctx.input_shape), None

    @staticmethod
    def vmap(info, in_dims, x, op):
        return _vmap_over_input(_LinearPool, info, in_dims, x, op)


class _LinearAdjoint(_Function):
    """Backward of a linear op; its own backward is the op again (the adjoint of the adjoint)."""

    @staticmethod
    def forward(grad_output, op, input_shape):
        return _as_tensor(op.adjoint(_for_kernels(grad_output), input_shape))

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.op = inputs[1]

    @staticmethod
    def backward(ctx, grad_grad_input):
        return _LinearPool.apply(grad_grad_input, ctx.op), None, None

    @staticmethod
    def vmap(info, in_dims, grad_output, op, input_shape):
        grad_output = _batch_first(grad_output, in_dims[0], info.batch_size)
        fold = _Fold(info.batch_size, op.dims, len(input_shape))
        return fold.unfold(_LinearAdjoint.apply(fold.fold(grad_output), op, fold.shape(input_shape))), 0


class _StochasticInference(_Function):
    @staticmethod
    def forward(x, op):
        return _pooled(x, op)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, op = inputs
        ctx.save_for_backward(x)  # autograd's version counter then catches an in-place change of x
        ctx.op = op

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: the same gradient, built from differentiable pieces
            return _stochastic_inference_gradient(grad_output, x, ctx.op), None
        return _as_tensor(ctx.op.backward(_for_kernels(grad_output), _for_kernels(x))), None

    @staticmethod
    def vmap(info, in_dims, x, op):
        return _vmap_over_input(_StochasticInference, info, in_dims, x, op)


def _stochastic_inference_gradient(grad_output, x, op) -> torch.Tensor:
    """The kernel's gradient of sum(p * p) / sum(p) (p = max(x, 0)) as differentiable torch ops.

    Windows with sum(p) > 0: d/dx_i = (2 p_i S1 - S2) / S1**2 where x_i > 0, with S1 = sum(p), S2 = sum(p * p).
    Windows with sum(p) <= 0 return their mean, whose gradient is spread evenly.
    """
    sums, input_shape = op.window_sums(), tuple(x.shape)
    p = x.clamp(min=0)
    s1, s2 = _LinearPool.apply(p, sums), _LinearPool.apply(p * p, sums)
    weighted = s1 > 0
    safe_s1 = torch.where(weighted, s1, torch.ones_like(s1))
    zero = torch.zeros_like(grad_output)
    a = _LinearAdjoint.apply(torch.where(weighted, grad_output / safe_s1, zero), sums, input_shape)
    b = _LinearAdjoint.apply(torch.where(weighted, grad_output * s2 / safe_s1**2, zero), sums, input_shape)
    mean_part = _LinearAdjoint.apply(torch.where(weighted, zero, grad_output), op.window_means(), input_shape)
    return (2 * p * a - b) * (x > 0).to(x.dtype) + mean_part


class _InputFormulaPool(_Function):
    """A smooth pooling whose backward reads x (numba_pool.ops._layer.InputCall): the kernels compute the
    gradient; under create_graph the call's own formula builds it from the differentiable pieces below."""

    @staticmethod
    def forward(x, op):
        return _pooled(x, op)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, op = inputs
        ctx.save_for_backward(x)
        ctx.op = op

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        if torch.is_grad_enabled():
            return ctx.op.gradient_graph(grad_output, x, _GRAPH_PIECES), None
        return _as_tensor(ctx.op.backward(_for_kernels(grad_output), _for_kernels(x))), None

    @staticmethod
    def vmap(info, in_dims, x, op):
        return _vmap_over_input(_InputFormulaPool, info, in_dims, x, op)


class _GraphPieces:
    """The differentiable calls an op's ``gradient_graph`` may use (each is an autograd Function above)."""

    linear = staticmethod(_LinearPool.apply)  # (tensor, LinearCall)
    adjoint = staticmethod(_LinearAdjoint.apply)  # (grad, LinearCall, input_shape)
    routed = staticmethod(_RoutedPool.apply)  # (tensor, RoutedCall) -> (output, indices)
    scatter = staticmethod(_Scatter.apply)  # (grad, indices, RoutedCall, input_shape)


_GRAPH_PIECES = _GraphPieces()


# --------------------------------------------------------------------------- modules


_CHANNELS_LAST_FORMAT = {2: torch.channels_last, 3: torch.channels_last_3d}


def _is_channels_last_memory(tensor: torch.Tensor) -> bool:
    """Whether a batched (N, C, ...) tensor is dense with channels innermost (and not also plain contiguous)."""
    if tensor.is_contiguous():
        return False
    if tensor.dim() == 3:
        return tensor.transpose(1, 2).is_contiguous()
    return tensor.dim() in (4, 5) and tensor.is_contiguous(memory_format=_CHANNELS_LAST_FORMAT[tensor.dim() - 2])


def _in_memory(tensor: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``tensor`` in contiguous or channels-last memory (no copy when it already is)."""
    if not channels_last:
        return tensor.contiguous()
    if tensor.dim() == 3:
        return tensor if tensor.transpose(1, 2).is_contiguous() else tensor.transpose(1, 2).contiguous().transpose(1, 2)
    return tensor.contiguous(memory_format=_CHANNELS_LAST_FORMAT[tensor.dim() - 2])


def _compute_dtype(x, op_name: str):
    """The dtype to pool ``x`` in when it is not its own: float32 for bfloat16 (which no array interface
    holds) and, under autocast, for float16 (autocast's rule for pooling: compute in float32)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{op_name}: x must be a torch.Tensor; got {type(x).__name__}")
    if x.dtype == torch.bfloat16 or (x.dtype == torch.float16 and torch.is_autocast_enabled(x.device.type)):
        return torch.float32
    return None


# The autograd Functions that run a layer's call, by what the call's backward reads (its ``saves``).
_APPLY = {
    "indices": lambda x, call: _RoutedPool.apply(x, call)[0],
    "input_shape": _LinearPool.apply,
    "input": _StochasticInference.apply,  # stochastic pooling's expected value (ExpectedValueCall)
    "input_formula": _InputFormulaPool.apply,  # smooth pooling whose backward reads x (InputCall: Lp norms)
}


class _Pool(torch.nn.Module):
    """A torch module with the settings of a numba_pool layer (the layer only holds them)."""

    layer_class: type
    op_name: str  # e.g. max_pool2d: starts error messages
    keeps_channels_last: bool  # whether PyTorch's module returns channels-last memory for channels-last input

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()
        if "reuse_buffers" in kwargs:
            raise TypeError(
                f"{type(self).__name__}: reuse_buffers is an option of the NumPy layers only; torch modules never "
                "reuse gradient buffers, since autograd may keep a gradient (x.grad, hooks)"
            )
        self.layer = self.layer_class(*args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        compute_dtype = _compute_dtype(x, self.op_name)
        y = self._pool(x if compute_dtype is None else x.to(compute_dtype))
        if x.dim() == self.layer.dims + 2 and not self.layer.channels_last:  # PyTorch's (N, C, ...) layout
            y = _in_memory(y, self.keeps_channels_last and _is_channels_last_memory(x))
        return y if compute_dtype is None else y.to(x.dtype)

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        layer = self.layer
        call = layer.autograd_call(self.training)  # the module's own train()/eval() mode, not the layer's
        return layer.from_autograd_output(_APPLY[call.saves](x, call))

    def extra_repr(self) -> str:
        # reuse_buffers is a NumPy-layer option; the modules never reuse buffers (autograd may keep a gradient)
        hidden = {"training", "reuse_buffers"}
        settings = {k: v for k, v in vars(self.layer).items() if not k.startswith("_") and k not in hidden}
        return ", ".join(f"{k}={v!r}" for k, v in settings.items())


def _module(spec: OpSpec, dims: int) -> type:
    """The module ``<layer><dims>d`` around the NumPy layer of the same name."""
    name = f"{spec.layer}{dims}d"
    layer_class = getattr(layers, name)
    doc = f"``torch.nn.Module`` running numba_pool's ``{name}`` layer; takes the same arguments.\n\n" + (
        layer_class.__doc__ or ""
    )
    attributes = {
        "layer_class": layer_class, "op_name": spec.public_name(dims),
        "keeps_channels_last": dims in spec.channels_last_output, "__doc__": doc, "__module__": __name__,
    }
    return type(name, (_Pool,), attributes)


_MODULES = {
    f"{spec.layer}{dims}d": _module(spec, dims) for spec in OPS if spec.layer is not None for dims in DIMENSIONALITIES
}
globals().update(_MODULES)
__all__ = list(_MODULES)
