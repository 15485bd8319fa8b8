"""What type checkers and IDEs see: the committed stubs are current, and ``mypy --strict`` on a user's
script reads the real parameters and return types (the functions themselves are generated at import)."""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from pathlib import Path

import mypy.api
import pytest

import numba_pool
from numba_pool.tools import stubs

PACKAGE = Path(numba_pool.__file__).parent

USER_SCRIPT = """
import numpy as np
import numba_pool as nb

x = np.zeros((1, 1, 4, 4), np.float32)
reveal_type(nb.max_pool2d(x, 2))
reveal_type(nb.max_pool2d(x, 2, return_indices=True))
reveal_type(nb.max_pool2d(x, 2, 2, 0, 1, False, True))
flag: bool = bool(x.size)
reveal_type(nb.stochastic_pool2d(x, 2, seed=3, return_indices=flag))
reveal_type(nb.avg_pool2d(x, (2, 2), padding="same"))
reveal_type(nb.MaxPool2d(2, reuse_buffers=True).backward(x))
"""

WRONG_SCRIPT = """
import numpy as np
import numba_pool as nb

x = np.zeros((1, 1, 4, 4), np.float32)
nb.max_pool2d(x, kernel=2)
nb.avg_pool2d(x)
count: int = nb.global_avg_pool2d(x)
nb.MaxPool2d(2, channel_last=True)
"""


def test_committed_stubs_are_what_the_registry_gives():
    for name, text in stubs.stubs().items():
        assert (PACKAGE / name).read_text() == text, f"{name} is stale: run python -m numba_pool.tools.stubs"
    assert (PACKAGE / "py.typed").exists()


def test_stub_signatures_match_the_runtime_signatures():
    """Each stub ``def`` names the parameters ``inspect.signature`` gives, in order (the last overload of
    a function with ``return_indices`` is the general one)."""
    tree = ast.parse((PACKAGE / "functional.pyi").read_text())
    last_definition = {node.name: node.args for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert sorted(last_definition) == sorted(numba_pool.functional.__all__)
    for name, arguments in last_definition.items():
        stub_names = [a.arg for a in arguments.args + arguments.kwonlyargs]
        assert stub_names == list(inspect.signature(getattr(numba_pool, name)).parameters), name


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory):
    """One cache for this module's mypy runs: the second reuses the first's analysis of NumPy and the stubs."""
    return tmp_path_factory.mktemp("mypy_cache")


def _mypy(tmp_path, monkeypatch, source: str, cache) -> str:
    script = tmp_path / "user_script.py"
    script.write_text(textwrap.dedent(source))
    monkeypatch.setenv("MYPYPATH", str(PACKAGE.parent))  # the source tree (an editable install hides it from mypy)
    stdout, stderr, _ = mypy.api.run(["--strict", "--cache-dir", str(cache), str(script)])
    return stdout + stderr


def test_mypy_strict_reads_parameters_and_return_types(tmp_path, monkeypatch, mypy_cache):
    report = _mypy(tmp_path, monkeypatch, USER_SCRIPT, mypy_cache)
    revealed = re.findall(r'Revealed type is "(.*)"', report)
    assert "error" not in report, report
    array, pair = "numpy.ndarray[", "tuple[numpy.ndarray["
    assert [kind.startswith(pair) for kind in revealed] == [False, True, True, False, False, False], report
    assert revealed[0].startswith(array) and pair in revealed[3] and "|" in revealed[3], report


def test_mypy_strict_catches_wrong_calls(tmp_path, monkeypatch, mypy_cache):
    report = _mypy(tmp_path, monkeypatch, WRONG_SCRIPT, mypy_cache)
    assert 'Unexpected keyword argument "kernel"' in report, report
    assert 'Missing positional argument "kernel_size" in call to "avg_pool2d"' in report, report
    assert 'variable has type "int"' in report, report
    assert 'Unexpected keyword argument "channel_last" for "MaxPool2d"' in report, report
    assert "numba_pool/" not in report.replace(str(PACKAGE.parent), ""), "no error inside the stubs"
