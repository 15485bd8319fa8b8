"""The backend contract: both backends provide every entry the ops declare, with the declared parameters, and no other.

The entries an op calls are declared as a Protocol next to its spec (``OpSpec.kernels``); the array
helpers and the entries shared by the routed ops in ``backends/contract.py``.
"""

import importlib.util
import inspect

import pytest

from numba_pool.backends import contract
from numba_pool.ops import OPS

BACKENDS = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(importlib.util.find_spec("numba_cuda") is None, reason="numba-cuda is not installed"),
    ),
]


def _declared(protocol: type) -> dict[str, inspect.Signature]:
    """The methods a Protocol declares, as signatures without ``self``."""
    methods = {}
    for name, member in vars(protocol).items():
        if inspect.isfunction(member) and not name.startswith("_"):
            signature = inspect.signature(member)
            methods[name] = signature.replace(parameters=list(signature.parameters.values())[1:])
    return methods


def _required_entries() -> dict[str, inspect.Signature]:
    entries = dict(_declared(contract.RoutedKernels))
    for spec in OPS:
        entries.update(_declared(spec.kernels))
    return entries


def _backend(name: str):
    return importlib.import_module(f"numba_pool.backends.{name}")


def _parameters(signature: inspect.Signature) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


def test_every_op_declares_its_entries():
    assert all(spec.kernels is not None for spec in OPS)
    assert _declared(OPS[0].kernels)  # the helper sees the methods a Protocol declares


@pytest.mark.parametrize("name", BACKENDS)
def test_backend_provides_each_declared_entry_with_its_parameters(name):
    backend = _backend(name)
    required = {**_declared(contract.ArrayBackend), **_required_entries()}
    for entry, declared in required.items():
        assert hasattr(backend, entry), f"backend {name} lacks {entry}"
        assert _parameters(inspect.signature(getattr(backend, entry))) == _parameters(declared), (name, entry)


@pytest.mark.parametrize("name", BACKENDS)
def test_backend_has_no_undeclared_entries(name):
    """An entry no op declares would be one a backend keeps for nothing (or the front end calls unchecked)."""
    assert set(_backend(name).ENTRIES) == set(_required_entries())
