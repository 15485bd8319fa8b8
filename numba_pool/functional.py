"""Public pooling functions, generated from the op registry (:mod:`numba_pool.ops`).

Each op module writes its implementation once, ``max_pool(dims, x, kernel_size,
...)``; here it becomes ``max_pool1d``, ``max_pool2d`` and ``max_pool3d``, each
with its own name, exact signature (``inspect.signature`` and ``help()`` show
it) and docstring. A call with a dask array goes to :mod:`numba_pool.dask`,
which builds a lazy graph of NumPy calls.
"""

from __future__ import annotations

import importlib
from typing import Callable

import numpy as np

from .backends import is_dask_array as _is_dask_array  # noqa: F401  (called by the compiled functions)
from .ops import DIMENSIONALITIES, OPS, Direction, OpSpec

# The adapter that runs calls on dask arrays. Imported by name on the first dask call: it builds on this
# module's public functions, so importing it here would make a cycle (and cost every user the dask import).
_DASK_ADAPTER = "numba_pool.dask"
_ndarray = np.ndarray


# Each public function is compiled from this template, so that it has its own name and real parameters:
# Python then reports a wrong call in the public function's words ("max_pool2d() missing 1 required
# positional argument: 'kernel_size'"), and a call costs no packing of *args.
_TEMPLATE = """
def _factory(_implementation, _lazy, _defaults):
    {defaults}
    def {name}({parameters}):
        if {lazy_test}:
            return _lazy({keywords})
        return _implementation({dims}, {arguments})
    return {name}
"""


def _public_function(spec: OpSpec, direction: Direction, dims: int) -> Callable:
    """The public function ``<op><dims>d<suffix>``: the op's implementation with ``dims`` fixed."""
    implementation = direction.implementation
    name = spec.public_name(dims, direction)
    signature = direction.public_signature()
    parameters, arguments, defaults = [], [], []
    for index, parameter in enumerate(signature.parameters.values()):
        if parameter.kind is parameter.KEYWORD_ONLY and "*" not in parameters:
            parameters.append("*")
        if parameter.default is parameter.empty:
            parameters.append(parameter.name)
        else:
            defaults.append(parameter.default)
            parameters.append(f"{parameter.name}=_default_{index}")
        keyword = parameter.kind is parameter.KEYWORD_ONLY
        arguments.append(f"{parameter.name}={parameter.name}" if keyword else parameter.name)
    arrays = [p for p in ("x", "grad_output") if p in signature.parameters]
    source = _TEMPLATE.format(
        name=name,
        dims=dims,
        parameters=", ".join(parameters),
        arguments=", ".join(arguments),
        keywords=", ".join(f"{p}={p}" for p in signature.parameters),
        # The common case, a NumPy array, is decided by one type check.
        lazy_test=" or ".join(f"(type({a}) is not _ndarray and _is_dask_array({a}))" for a in arrays),
        defaults="; ".join(
            f"_default_{i} = _defaults[{n}]"
            for n, i in enumerate(i for i, p in enumerate(signature.parameters.values()) if p.default is not p.empty)
        ) or "pass",
    )
    namespace: dict = {}
    exec(compile(source, f"<numba_pool.functional: {name}>", "exec"), globals(), namespace)  # noqa: S102

    def lazy(**options):
        return importlib.import_module(_DASK_ADAPTER).call(spec, direction, dims, (), options)

    public = namespace["_factory"](implementation, lazy, tuple(defaults))
    public.__qualname__ = name  # a module-level name: pickled by reference, like any function
    if hasattr(public.__code__, "co_qualname"):  # Python 3.11+ names a wrong call by the code's qualname
        public.__code__ = public.__code__.replace(co_qualname=name)
    public.__doc__ = direction.doc(dims)
    public.__annotations__ = {key: value for key, value in implementation.__annotations__.items() if key != "dims"}
    # typing.get_type_hints resolves the annotations in the op module, where their names are defined.
    public.__wrapped__ = implementation
    public.__signature__ = signature  # what inspect.signature shows, instead of following __wrapped__
    return public


def _generate() -> dict[str, Callable]:
    return {
        spec.public_name(dims, direction): _public_function(spec, direction, dims)
        for spec in OPS
        for direction in spec.directions
        for dims in DIMENSIONALITIES
    }


_FUNCTIONS = _generate()
globals().update(_FUNCTIONS)
__all__ = sorted(_FUNCTIONS)
