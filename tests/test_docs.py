"""The API reference site builds with warnings as errors, with a page per op family listing its functions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numba_pool
from numba_pool import ops

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_site_builds_without_warnings_and_documents_every_public_name(tmp_path):
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-q", "-b", "html", str(DOCS), str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    pages = {name: (tmp_path / "api" / f"{name}.html").read_text() for name in ops._OP_MODULES}
    everything = "".join(pages.values())
    for name in numba_pool.functional.__all__ + numba_pool.layers.__all__:
        assert f'id="numba_pool.{name}"' in everything, f"{name} has no entry on the site"
    assert "pooling.png" in (tmp_path / "guide" / "start.html").read_text()
    for guide in ("cuda", "torch", "dask", "performance", "compared", "deployment"):
        assert (tmp_path / "guide" / f"{guide}.html").exists()
