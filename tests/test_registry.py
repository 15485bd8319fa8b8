"""The registry is complete: every op has its functions, docs, reference, layer, torch module, dask mode and checks.

Everything public is generated from ``numba_pool.ops.OPS``; these tests fail when an op lacks what a
generated part needs, rather than letting that part quietly skip the op.
"""

import importlib.util
import inspect
from pathlib import Path

import numpy as np
import pytest

import numba_pool
from numba_pool import functional, layers, reference
from numba_pool.ops import DIMENSIONALITIES, OPS
from numba_pool.ops.spec import WindowBlocks

SPECS = [pytest.param(spec, id=spec.name) for spec in OPS]


def test_names_are_unique():
    assert len({spec.name for spec in OPS}) == len(OPS)
    layer_names = [spec.layer for spec in OPS if spec.layer]
    assert len(set(layer_names)) == len(layer_names)


@pytest.mark.parametrize("spec", SPECS)
def test_every_public_function_is_generated_with_its_signature_and_doc(spec):
    for direction in spec.directions:
        for dims in DIMENSIONALITIES:
            name = spec.public_name(dims, direction)
            function = getattr(numba_pool, name)
            assert function is getattr(functional, name) and name in numba_pool.__all__
            assert function.__name__ == name
            parameters = inspect.signature(function).parameters
            assert list(parameters) == list(direction.public_signature().parameters)
            section = function.__doc__.split("Parameters\n----------\n", 1)[1].split("\n\n", 1)[0]
            entries = [line.split(" :")[0] for line in section.splitlines() if line and not line.startswith(" ")]
            documented = {word.strip() for entry in entries for word in entry.split(",")}
            assert set(parameters) <= documented, f"{name} does not document {set(parameters) - documented}"
            with pytest.raises(TypeError, match=rf"^{name}\(\) missing"):  # Python's own check, in the public name
                function()
            assert function.__doc__.startswith(f"{dims}-D") or f"{spec.name}{dims}d" in function.__doc__.split("\n")[0]
            assert "Parameters\n----------" in function.__doc__ and ">>> " in function.__doc__, name


@pytest.mark.parametrize("spec", SPECS)
def test_every_op_has_a_reference_function(spec):
    assert callable(spec.reference) and spec.reference.__module__ == reference.__name__


@pytest.mark.parametrize("spec", SPECS)
def test_every_op_with_a_layer_has_layer_classes_and_torch_modules(spec):
    if spec.layer is None:
        assert spec.layer_class is None and spec.backwards == (), "an op with a backward has a layer"
        return
    assert spec.layer_class is not None and spec.layer_class.saves == spec.saves
    for name in spec.layer_names():
        assert getattr(numba_pool, name) is getattr(layers, name) and name in numba_pool.__all__
    if importlib.util.find_spec("torch") is not None:
        import numba_pool.torch as nt

        assert all(name in nt.__all__ and isinstance(getattr(nt, name), type) for name in spec.layer_names())


@pytest.mark.parametrize("spec", SPECS)
def test_every_op_has_a_dask_mode(spec):
    assert spec.dask in ("windows", "planes")
    assert (spec.dask == "windows") == isinstance(spec.windows, WindowBlocks)


@pytest.mark.parametrize("spec", SPECS)
def test_every_op_has_its_backend_entries_and_checks(spec):
    assert spec.kernels is not None
    assert spec.device_checks is not None or spec.selfcheck is None, "a self-checked op is also checked on the GPU"
    # The max flavours of global and adaptive pooling share the line of their average sibling.
    checked = spec if spec.selfcheck is not None else next((o for o in OPS if o.name == spec.name.replace("max", "avg")), None)
    assert checked is not None and checked.selfcheck is not None, f"numba-pool check has no line for {spec.name}"
    assert spec.warm is not None, f"numba-pool warm has no calls for {spec.name}"


def test_the_public_api_is_the_registry_and_nothing_else():
    generated = {name for spec in OPS for name in spec.public_names()} | {n for spec in OPS for n in spec.layer_names()}
    assert set(numba_pool.__all__) == generated | {"__version__", "IntOrTuple", "warm"}


def test_every_device_check_runs_on_the_host(monkeypatch):
    """bench.gpu_check's cases of every op, run on host arrays (the GPU check compares each with its device
    run; test_cuda runs the script end to end on two ops under the simulator)."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent))
    gpu_check = importlib.import_module("bench.gpu_check")
    names = set()
    for layout in ("nchw", "nhwc"):
        x = gpu_check._layout_host((2, 3, 9, 8), layout, seed=1)
        for name, (run, rule) in gpu_check._cases(layout).items():
            result = run(x, gpu_check._gradient_like(2, np.float32))
            assert rule in ("exact", "close") and result is not None, name
            names.add(name.split(" k")[0])
    assert len(names) >= len([spec for spec in OPS if spec.device_checks is not None]), names
