"""The package's import structure: each layer imports only the layers below it, and no module imports itself back.

The layers are declared in pyproject.toml ([tool.importlinter]): tools, then the adapters (torch, dask),
layers, the public functions, ops, backends, and the core (_spec, _rng, reference).
"""

import itertools
import pathlib

import pytest

grimp = pytest.importorskip("grimp")
importlinter_cli = pytest.importorskip("importlinter.cli")

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_layers_contract_holds(monkeypatch):
    monkeypatch.chdir(ROOT)  # the contract lives in pyproject.toml
    assert importlinter_cli.lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0


def test_no_import_cycles():
    graph = grimp.build_graph("numba_pool", cache_dir=None)
    cycles = [
        (a, b)
        for a, b in itertools.permutations(sorted(graph.modules), 2)
        if graph.direct_import_exists(importer=a, imported=b) and graph.chain_exists(importer=b, imported=a)
        # a package importing its own submodules, which import names from it, is not a cycle of modules
        and not (b.startswith(a + ".") or a.startswith(b + "."))
    ]
    assert cycles == []
