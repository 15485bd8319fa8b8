"""Pooling layers for NumPy training loops.

Each layer holds its parameters, remembers in ``forward`` what its
``backward`` needs, and calls the functions of :mod:`numba_pool.functional`.

>>> import numpy as np, numba_pool
>>> pool = numba_pool.MaxPool2d(2)
>>> y = pool(np.arange(16.0).reshape(1, 1, 4, 4))
>>> pool.backward(np.ones_like(y))[0, 0, 1]
array([0., 1., 0., 1.])

Every layer takes ``reuse_buffers=False``. With ``True``, ``backward`` writes
into the array it returned last time (as ``out=``) when the new gradient has
the same shape, dtype and memory layout, so a training loop stops paying for a
fresh input-sized array (and its page faults) each step. The price: the
previous gradient is overwritten, so a caller that keeps it must copy it.
It is opt-in because the layer cannot tell whether the caller still holds
that array (a reference count cannot: a loop's own variable still holds the
last gradient when the next backward runs).
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np

from . import _spec, functional

IntOrTuple = Union[int, Sequence[int]]


class _PoolLayer:
    """Shared plumbing: calling the layer runs forward; backward needs a forward first."""

    dims: int  # set by each concrete class

    def __init__(self, channels_last: bool = False, reuse_buffers: bool = False) -> None:
        self.channels_last = channels_last
        self.reuse_buffers = _spec.check_flag(reuse_buffers, "reuse_buffers", type(self).__name__)
        self._saved: Optional[dict] = None
        # (what the latest backward's result depended on, that result), kept when reuse_buffers.
        self._gradient_buffer: Optional[tuple] = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        """Gradient with respect to the input of the latest ``forward`` call."""
        raise NotImplementedError

    def _function(self, name: str):
        return getattr(functional, name.format(d=self.dims))

    def _run_backward(self, backward, grad_output, *arguments, memory_source=None):
        """``backward(grad_output, *arguments)`` in this layer's layout, into the last gradient array when allowed.

        A fresh gradient's shape, dtype and memory follow ``arguments`` (the input shape or
        x), grad_output, and ``memory_source`` (x, for the stochastic inference gradient);
        the last array is reused only when all of these are as they were for it.
        """
        if not self.reuse_buffers or type(grad_output) is not np.ndarray:
            return backward(grad_output, *arguments, channels_last=self.channels_last)
        key = (backward, self.channels_last, *map(_layout_key, (grad_output, memory_source, *arguments)))
        out = None
        if self._gradient_buffer is not None and self._gradient_buffer[0] == key:
            out = self._gradient_buffer[1]
            # The caller passed (a view of) the last gradient back in: it cannot be overwritten while read.
            if np.may_share_memory(out, grad_output) or np.may_share_memory(out, memory_source):
                out = None
        result = backward(grad_output, *arguments, channels_last=self.channels_last, out=out)
        self._gradient_buffer = (key, result)
        return result

    def _remember(self, output: np.ndarray, **saved) -> None:
        """Keep what backward needs, and the output's shape, which the gradient must have."""
        self._saved = dict(saved, output_shape=np.shape(output))

    def _recall(self, grad_output) -> dict:
        if self._saved is None:
            raise RuntimeError(f"{type(self).__name__}.backward was called before forward; call forward(x) first")
        expected = self._saved["output_shape"]
        if np.shape(grad_output) != expected:
            raise ValueError(
                f"{type(self).__name__}.backward: grad_output must have the shape of the latest forward's output "
                f"{expected}; got {np.shape(grad_output)}"
            )
        return self._saved

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({settings})"


def _layout_key(value):
    """An array's shape, dtype and strides (what a fresh gradient can take from it); any other value itself."""
    if isinstance(value, np.ndarray):
        return (value.shape, value.dtype, value.strides)
    return value


class _RoutedPool(_PoolLayer):
    """Layers whose forward returns indices and whose backward sends each gradient there."""

    _backward_name: str

    def _pool_with_indices(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def forward(self, x: np.ndarray) -> np.ndarray:
        y, indices = self._pool_with_indices(x)
        self._remember(y, indices=indices, input_shape=np.shape(x))
        return y

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        saved = self._recall(grad_output)
        backward = self._function(self._backward_name)
        return self._run_backward(backward, grad_output, saved["indices"], saved["input_shape"])


class _ShapePool(_PoolLayer):
    """Layers whose backward needs only the input shape (global and adaptive average pooling)."""

    _forward_name: str
    _backward_name: str

    def _arguments(self) -> tuple:
        raise NotImplementedError

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = self._function(self._forward_name)(x, *self._arguments(), channels_last=self.channels_last)
        self._remember(y, input_shape=np.shape(x))
        return y

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        input_shape = self._recall(grad_output)["input_shape"]
        return self._run_backward(self._function(self._backward_name), grad_output, input_shape)


class _MaxPool(_RoutedPool):
    _backward_name = "max_pool{d}d_backward"

    def __init__(
        self,
        kernel_size: IntOrTuple,
        stride: Optional[IntOrTuple] = None,
        padding: IntOrTuple = 0,
        dilation: IntOrTuple = 1,
        ceil_mode: bool = False,
        *,
        channels_last: bool = False,
        reuse_buffers: bool = False,
    ) -> None:
        super().__init__(channels_last, reuse_buffers)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dilation, self.ceil_mode = dilation, ceil_mode

    def _pool_with_indices(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._function("max_pool{d}d")(
            x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode, True,
            channels_last=self.channels_last,
        )


class _AvgPool(_PoolLayer):
    def __init__(
        self,
        kernel_size: IntOrTuple,
        stride: Optional[IntOrTuple] = None,
        padding: IntOrTuple = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: Optional[int] = None,
        *,
        channels_last: bool = False,
        reuse_buffers: bool = False,
    ) -> None:
        super().__init__(channels_last, reuse_buffers)
        self.kernel_size, self.stride, self.padding, self.ceil_mode = kernel_size, stride, padding, ceil_mode
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override

    def _window(self) -> tuple:
        return (self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad, self.divisor_override)

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = self._function("avg_pool{d}d")(x, *self._window(), channels_last=self.channels_last)
        self._remember(y, input_shape=np.shape(x))
        return y

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        input_shape = self._recall(grad_output)["input_shape"]
        return self._run_backward(self._function("avg_pool{d}d_backward"), grad_output, input_shape, *self._window())


class _StochasticPool(_PoolLayer):
    """Samples in training mode (the default), returns expected values in eval mode.

    ``seed`` seeds the layer's own generator, from which each training
    forward draws a fresh seed: a layer built with the same seed replays the
    same sequence of samples.
    """

    def __init__(
        self,
        kernel_size: IntOrTuple,
        stride: Optional[IntOrTuple] = None,
        padding: IntOrTuple = 0,
        ceil_mode: bool = False,
        seed: Union[int, np.random.Generator, None] = None,
        *,
        channels_last: bool = False,
        reuse_buffers: bool = False,
    ) -> None:
        super().__init__(channels_last, reuse_buffers)
        self.kernel_size, self.stride, self.padding, self.ceil_mode = kernel_size, stride, padding, ceil_mode
        self.training = True
        self._generator = np.random.default_rng(seed)

    def train(self, mode: bool = True):
        """Switch to training (sampling) mode, or to eval mode with ``mode=False``; returns the layer."""
        self.training = _spec.check_flag(mode, "mode", f"{type(self).__name__}.train")
        return self

    def eval(self):
        """Switch to eval (expected value) mode; returns the layer."""
        return self.train(False)

    def _window(self) -> tuple:
        return (self.kernel_size, self.stride, self.padding, self.ceil_mode)

    def forward(self, x: np.ndarray) -> np.ndarray:
        pool = self._function("stochastic_pool{d}d")
        if self.training:
            y, indices = pool(x, *self._window(), True, self._generator, True, channels_last=self.channels_last)
            self._remember(y, training=True, indices=indices, input_shape=np.shape(x))
        else:
            y = pool(x, *self._window(), False, channels_last=self.channels_last)
            self._remember(y, training=False, x=x)
        return y

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        """Training: to the sampled elements. Eval: the exact gradient of the expected value."""
        saved = self._recall(grad_output)
        if saved["training"]:
            backward = self._function("stochastic_pool{d}d_backward")
            return self._run_backward(backward, grad_output, saved["indices"], saved["input_shape"])
        backward = self._function("stochastic_pool{d}d_inference_backward")
        return self._run_backward(backward, grad_output, saved["x"], *self._window(), memory_source=saved["x"])


class _GlobalAvgPool(_ShapePool):
    _forward_name, _backward_name = "global_avg_pool{d}d", "global_avg_pool{d}d_backward"

    def __init__(self, keepdims: bool = False, *, channels_last: bool = False, reuse_buffers: bool = False) -> None:
        super().__init__(channels_last, reuse_buffers)
        self.keepdims = keepdims

    def _arguments(self) -> tuple:
        return (self.keepdims,)


class _GlobalMaxPool(_RoutedPool):
    _backward_name = "global_max_pool{d}d_backward"

    def __init__(self, keepdims: bool = False, *, channels_last: bool = False, reuse_buffers: bool = False) -> None:
        super().__init__(channels_last, reuse_buffers)
        self.keepdims = keepdims

    def _pool_with_indices(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._function("global_max_pool{d}d")(x, self.keepdims, True, channels_last=self.channels_last)


class _AdaptiveAvgPool(_ShapePool):
    _forward_name, _backward_name = "adaptive_avg_pool{d}d", "adaptive_avg_pool{d}d_backward"

    def __init__(self, output_size, *, channels_last: bool = False, reuse_buffers: bool = False) -> None:
        super().__init__(channels_last, reuse_buffers)
        self.output_size = output_size

    def _arguments(self) -> tuple:
        return (self.output_size,)


class _AdaptiveMaxPool(_RoutedPool):
    _backward_name = "adaptive_max_pool{d}d_backward"

    def __init__(self, output_size, *, channels_last: bool = False, reuse_buffers: bool = False) -> None:
        super().__init__(channels_last, reuse_buffers)
        self.output_size = output_size

    def _pool_with_indices(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._function("adaptive_max_pool{d}d")(x, self.output_size, True, channels_last=self.channels_last)


def _concrete(base: type, name: str, dims: int) -> type:
    """The layer class ``name`` (e.g. MaxPool2d): ``base`` fixed to ``dims`` spatial dims."""
    function = name[0].lower() + "".join("_" + ch.lower() if ch.isupper() else ch for ch in name[1:-2])
    doc = (
        f"{dims}-D {name[:-2]} layer: ``forward(x)`` (or calling it) and ``backward(grad_output)``.\n\n"
        f"Parameters are those of ``numba_pool.{function}{dims}d``; see its docstring. With\n"
        "``reuse_buffers=True`` (default False), ``backward`` writes into the gradient array it\n"
        "returned last time when shape, dtype and memory layout allow: copy a gradient you keep.\n\n"
        + (base.__doc__ or "")
    )
    return type(name, (base,), {"dims": dims, "__doc__": doc, "__module__": __name__})


MaxPool1d, MaxPool2d, MaxPool3d = (_concrete(_MaxPool, f"MaxPool{d}d", d) for d in (1, 2, 3))
AvgPool1d, AvgPool2d, AvgPool3d = (_concrete(_AvgPool, f"AvgPool{d}d", d) for d in (1, 2, 3))
StochasticPool1d, StochasticPool2d, StochasticPool3d = (
    _concrete(_StochasticPool, f"StochasticPool{d}d", d) for d in (1, 2, 3)
)
GlobalAvgPool1d, GlobalAvgPool2d, GlobalAvgPool3d = (_concrete(_GlobalAvgPool, f"GlobalAvgPool{d}d", d) for d in (1, 2, 3))
GlobalMaxPool1d, GlobalMaxPool2d, GlobalMaxPool3d = (_concrete(_GlobalMaxPool, f"GlobalMaxPool{d}d", d) for d in (1, 2, 3))
AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveAvgPool3d = (
    _concrete(_AdaptiveAvgPool, f"AdaptiveAvgPool{d}d", d) for d in (1, 2, 3)
)
AdaptiveMaxPool1d, AdaptiveMaxPool2d, AdaptiveMaxPool3d = (
    _concrete(_AdaptiveMaxPool, f"AdaptiveMaxPool{d}d", d) for d in (1, 2, 3)
)

__all__ = [f"{family}{dims}d" for family in (
    "MaxPool", "AvgPool", "StochasticPool", "GlobalAvgPool", "GlobalMaxPool", "AdaptiveAvgPool", "AdaptiveMaxPool",
) for dims in (1, 2, 3)]
