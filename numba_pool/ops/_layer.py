"""What every layer shares, and the bases an op module's layer builds on.

An op with a layer writes one small class in its op module, without a
dimensionality: ``__init__`` (the layer's parameters) and the arguments its
calls take. :mod:`numba_pool.layers` makes ``<layer>1d`` .. ``<layer>3d`` of it,
setting ``dims`` and ``functions`` (the op's public functions of that
dimensionality, by direction suffix: ``""``, ``"_backward"`` and so on), so a
layer given a dask or CUDA array runs as the public functions do.

Autograd adapters (:mod:`numba_pool.torch`) ask a layer for
``autograd_call(training)``: one of the calls below, whose ``saves`` says which
autograd Functions run it, and pass its output through
``from_autograd_output``. Nothing here imports torch.
"""

from __future__ import annotations

import functools
from typing import Callable, Optional

import numpy as np

from .. import _spec


class PoolLayer:
    """Shared plumbing: calling the layer runs forward; backward needs a forward first."""

    dims: int  # set by each generated class
    functions: dict[str, Callable]  # the op's public functions of this dims, by direction suffix
    saves: str  # what forward keeps for backward, as the op's OpSpec says

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

    def pool_arguments(self) -> tuple:
        """The forward function's arguments after ``x`` (asking for indices where the backward needs them)."""
        raise NotImplementedError

    def autograd_arguments(self) -> tuple:
        """The forward arguments of an autograd adapter's call; the layer's own unless the op says otherwise."""
        return self.pool_arguments()

    def from_autograd_output(self, y):
        """The layer's output from the adapter call's output (a NumPy array or a tensor)."""
        return y

    def autograd_call(self, training: bool = True):
        """The call an autograd adapter runs; ``training`` is the adapter's mode (a torch module has its own)."""
        raise NotImplementedError

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


class RoutedLayer(PoolLayer):
    """A layer whose forward returns indices and whose backward sends each gradient there."""

    saves = "indices"

    def forward(self, x: np.ndarray) -> np.ndarray:
        y, indices = self.functions[""](x, *self.pool_arguments(), channels_last=self.channels_last)
        self._remember(y, indices=indices, input_shape=np.shape(x))
        return y

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        saved = self._recall(grad_output)
        return self._run_backward(self.functions["_backward"], grad_output, saved["indices"], saved["input_shape"])

    def autograd_call(self, training: bool = True) -> RoutedCall:
        functions = self.functions
        return RoutedCall(self.dims, self.channels_last, functions[""], self.autograd_arguments(), functions["_backward"])


class LinearLayer(PoolLayer):
    """A layer that is a linear map (average pooling of any kind); its backward needs only the input shape."""

    saves = "input_shape"

    def backward_arguments(self) -> tuple:
        """The backward function's arguments after ``input_shape``."""
        return ()

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = self.functions[""](x, *self.pool_arguments(), channels_last=self.channels_last)
        # Saved with the forward that succeeded: a forward that raises leaves the last one's arguments.
        self._remember(y, input_shape=np.shape(x), backward_arguments=self.backward_arguments())
        return y

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        saved = self._recall(grad_output)
        backward = self.functions["_backward"]
        return self._run_backward(backward, grad_output, saved["input_shape"], *saved["backward_arguments"])

    def autograd_call(self, training: bool = True) -> LinearCall:
        functions = self.functions
        return LinearCall(
            self.dims, self.channels_last, functions[""], self.autograd_arguments(),
            functions["_backward"], self.backward_arguments(),
        )


class InputLayer(PoolLayer):
    """A layer whose backward reads the forward input itself (a smooth nonlinear pooling, Lp norms).

    Its backward function takes ``(grad_output, x, *backward_arguments())``. For autograd adapters the op
    writes ``gradient_graph(grad_output, x, pieces)``: the same gradient from differentiable pieces, for
    ``create_graph`` (see :class:`InputCall`).
    """

    saves = "input_formula"

    def backward_arguments(self) -> tuple:
        """The backward function's arguments after ``x``: the forward's own by default."""
        return self.pool_arguments()

    def keyword_arguments(self) -> dict:
        """Keyword-only arguments both functions take (besides ``channels_last``)."""
        return {}

    def _functions(self) -> tuple[Callable, Callable]:
        """The forward and backward functions with ``keyword_arguments()`` bound."""
        keywords = self.keyword_arguments()
        forward, backward = self.functions[""], self.functions["_backward"]
        if not keywords:
            return forward, backward
        return functools.partial(forward, **keywords), functools.partial(backward, **keywords)

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = self._functions()[0](x, *self.pool_arguments(), channels_last=self.channels_last)
        self._remember(y, x=x)
        return y

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        x = self._recall(grad_output)["x"]
        return self._run_backward(self._functions()[1], grad_output, x, *self.backward_arguments(), memory_source=x)

    def gradient_graph(self, grad_output, x, pieces):
        """The gradient as differentiable tensor operations (see :class:`InputCall`)."""
        raise NotImplementedError

    def autograd_call(self, training: bool = True) -> InputCall:
        forward, backward = self._functions()
        return InputCall(
            self.dims, self.channels_last, forward, self.autograd_arguments(),
            backward, self.backward_arguments(), self.gradient_graph,
        )


# --------------------------------------------------------------------------- calls: one adapter call's settings
# A call holds what one autograd call needs (the functions and their arguments); an adapter's
# autograd Functions are shared by every call of a kind (its ``saves``).


class Call:
    """One call's dims and layout; ``saves`` names the kind (the adapter's Functions for it)."""

    saves: str

    def __init__(self, dims: int, channels_last: bool) -> None:
        self.dims, self.channels_last = dims, channels_last


class RoutedCall(Call):
    """A pooling that picks one input element per output; its backward sends each gradient there.

    ``arguments`` follow x in the pooling call and ask for indices.
    """

    saves = "indices"

    def __init__(self, dims, channels_last, forward, arguments, backward) -> None:
        super().__init__(dims, channels_last)
        self._forward, self._arguments, self._backward = forward, arguments, backward

    def pool(self, x):
        """(output, indices) of x."""
        return self._forward(x, *self._arguments, channels_last=self.channels_last)

    def scatter(self, grad_output, indices, input_shape):
        return self._backward(grad_output, indices, input_shape, channels_last=self.channels_last)


class LinearCall(Call):
    """A pooling that is a linear map; its backward is the adjoint map."""

    saves = "input_shape"

    def __init__(self, dims, channels_last, forward, arguments, backward, backward_arguments) -> None:
        super().__init__(dims, channels_last)
        self._forward, self._arguments = forward, arguments
        self._backward, self._backward_arguments = backward, backward_arguments

    def pool(self, x):
        return self._forward(x, *self._arguments, channels_last=self.channels_last)

    def adjoint(self, grad_output, input_shape):
        return self._backward(grad_output, input_shape, *self._backward_arguments, channels_last=self.channels_last)



class InputCall(Call):
    """A smooth nonlinear pooling whose backward reads x (``saves = "input_formula"``).

    ``backward(grad_output, x)`` runs the kernels. ``gradient_graph(grad_output, x, pieces)`` gives the same
    gradient built from tensor operations and the adapter's differentiable ``pieces`` (``linear(tensor,
    call)`` and ``adjoint(tensor, call, input_shape)`` for a :class:`LinearCall`, ``routed(tensor, call)``
    and ``scatter(grad, indices, call, input_shape)`` for a :class:`RoutedCall`), so that an adapter can
    differentiate the gradient again without knowing the op.
    """

    saves = "input_formula"

    def __init__(self, dims, channels_last, forward, arguments, backward, backward_arguments, gradient_graph) -> None:
        super().__init__(dims, channels_last)
        self._forward, self._arguments = forward, arguments
        self._backward, self._backward_arguments = backward, backward_arguments
        self.gradient_graph = gradient_graph

    def pool(self, x):
        return self._forward(x, *self._arguments, channels_last=self.channels_last)

    def backward(self, grad_output, x):
        return self._backward(grad_output, x, *self._backward_arguments, channels_last=self.channels_last)
