"""Sphinx configuration of numba_pool's API reference site (``sphinx-build -W docs docs/_build/html``).

The pages of the guide include sections of the README (one source for both);
the API pages, one per op family, are written here at build time from the op
registry (``numba_pool.ops``), so a new op appears without editing the docs.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import numba_pool
from numba_pool import ops

project = "numba_pool"
author = "the numba_pool developers"
release = numba_pool.__version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "myst_parser"]
napoleon_google_docstring = False  # numpydoc-style docstrings only
napoleon_use_rtype = False
autodoc_typehints = "signature"
myst_heading_anchors = 3  # the README's links to its own sections work on the site too
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_title = f"numba_pool {release}"

API = Path(__file__).parent / "api"


def _family_page(module_name: str) -> str:
    """The rst page of one op module: its docstring, then every public function and layer it makes."""
    module = importlib.import_module(f"numba_pool.ops.{module_name}")
    summary, _, details = inspect.cleandoc(module.__doc__ or module_name).partition("\n")
    title = summary.split(":")[0]
    lines = [title, "=" * len(title), "", summary, "", details.strip(), ""]
    for spec in module.SPECS:
        for dims in ops.DIMENSIONALITIES:
            lines += [f".. autofunction:: numba_pool.{spec.public_name(dims, d)}" for d in spec.directions]
            lines.append("")
        for layer in spec.layer_names():
            lines += [f".. autoclass:: numba_pool.{layer}", "   :members: forward, backward", ""]
    return "\n".join(lines)


def _write_api_pages() -> None:
    API.mkdir(exist_ok=True)
    names = list(ops._OP_MODULES)
    for name in names:
        page = API / f"{name}.rst"
        text = _family_page(name)
        if not page.exists() or page.read_text() != text:  # unchanged pages keep their time: no rebuild
            page.write_text(text)
    index = "API reference\n=============\n\nOne page per op family, generated from the op registry.\n\n"
    index += ".. toctree::\n   :maxdepth: 1\n\n" + "".join(f"   {name}\n" for name in names)
    (API / "index.rst").write_text(index)


_write_api_pages()
