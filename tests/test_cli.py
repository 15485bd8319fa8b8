"""The numba-pool command, run as users run it: in a subprocess, checking exit codes and output."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from numba_pool import _selfcheck, cli


def numba_pool(*arguments, cwd=None, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "numba_pool", *arguments], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )


def test_the_console_script_is_installed():
    executable = shutil.which("numba-pool")
    assert executable, 'pip install -e ".[test]" installs the numba-pool command'
    result = subprocess.run([executable, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for command in ("demo", "bench", "check", "info"):
        assert command in result.stdout


@pytest.mark.parametrize("command", ["demo", "bench", "check", "info"])
def test_every_command_has_help(command):
    result = numba_pool(command, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith(f"usage: numba-pool {command}")


@pytest.mark.parametrize(
    "arguments, complaint",
    [
        ((), "the following arguments are required: COMMAND"),
        (("frobnicate",), "invalid choice: 'frobnicate'"),
        (("demo", "--kernel", "0"), "expected a positive integer, got 0"),
        (("demo", "--stride", "two"), "expected a positive integer, got 'two'"),
        (("bench", "--layout", "nwhc"), "invalid choice: 'nwhc'"),
        (("bench", "--ops", "max_everything"), "invalid choice: 'max_everything'"),
        (("check", "--cases", "-1"), "expected a positive integer"),
    ],
)
def test_wrong_arguments_get_argparse_errors(arguments, complaint):
    result = numba_pool(*arguments)
    assert result.returncode == cli.EXIT_USAGE
    assert complaint in result.stderr


def _write_png(path, height, width):
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def test_demo_with_a_tiny_image(tmp_path):
    _write_png(tmp_path / "tiny.png", 12, 10)
    result = numba_pool("demo", "--image", "tiny.png", "--out", "result.png", "--kernel", "3", "--stride", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for pooling in ("max pooling", "average pooling", "stochastic, training", "stochastic, inference", "global average"):
        assert pooling in result.stdout
    assert "12x10 RGB" in result.stdout and "wrote result.png" in result.stdout
    from PIL import Image

    with Image.open(tmp_path / "result.png") as picture:
        assert picture.format == "PNG" and picture.size[0] > 600


def test_demo_default_scene(tmp_path):
    result = numba_pool("demo", "--out", "scene.png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "generated scene 192x192" in result.stdout
    assert (tmp_path / "scene.png").stat().st_size > 10_000


def test_demo_refuses_a_missing_image(tmp_path):
    result = numba_pool("demo", "--image", "nowhere.png", cwd=tmp_path)
    assert result.returncode == cli.EXIT_USAGE
    assert "nowhere.png is not a readable file" in result.stderr


def test_demo_refuses_a_file_that_is_not_an_image(tmp_path):
    (tmp_path / "notes.png").write_text("not a picture")
    result = numba_pool("demo", "--image", "notes.png", cwd=tmp_path)
    assert result.returncode == cli.EXIT_USAGE
    assert "cannot read notes.png as an image" in result.stderr


def test_demo_without_matplotlib_names_the_extra(tmp_path):
    code = "import sys; sys.modules['matplotlib'] = None; from numba_pool import cli; sys.exit(cli.main(['demo']))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == cli.EXIT_MISSING_EXTRA
    assert 'pip install "numba-pool[demo]"' in result.stderr


def test_check_passes_and_reports_every_op():
    result = numba_pool("check", "--cases", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in _selfcheck.CHECKS:
        assert f"ok       cpu  {name}" in result.stdout
    assert "all ops agree with the NumPy reference" in result.stdout


def test_check_exits_1_on_a_mismatch(monkeypatch, capsys):
    working = _selfcheck.nb.avg_pool2d

    def off_by_one(x, *args, **options):  # a broken average pooling
        return working(x, *args, **options) + 1

    monkeypatch.setattr(_selfcheck, "nb", _Patched(_selfcheck.nb, avg_pool2d=off_by_one))
    assert cli.main(["check", "--cases", "1"]) == cli.EXIT_MISMATCH
    output = capsys.readouterr().out
    assert "MISMATCH cpu  avg_pool2d" in output and "ok       cpu  max_pool2d" in output


class _Patched:
    """A module stand-in with some functions replaced."""

    def __init__(self, module, **replacements):
        self._module, self._replacements = module, replacements

    def __getattr__(self, name):
        return self._replacements.get(name) or getattr(self._module, name)


def test_info_names_versions_threads_cache_and_cuda():
    import numba

    result = numba_pool("info")
    assert result.returncode == 0, result.stderr
    assert f"numba:                 {numba.__version__}" in result.stdout
    for field in ("numba_pool:", "numpy:", "numba-cuda:", "threading layer:", "threads:", "cache directory:", "CUDA:"):
        assert field in result.stdout
    assert "not started" not in result.stdout


def test_bench_on_a_tiny_quick_set(tmp_path):
    result = numba_pool(
        "bench", "--quick", "--ops", "max_forward", "avg_backward", "--layout", "nchw", "--repeats", "1",
        "--json", "figures.json", cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].split()[:3] == ["case", "op", "ours"]
    assert sum("max_forward" in line for line in lines) == 3  # k2s2 and k3s2 at the quick shape, and the tiny case
    assert "bench:" in result.stderr and "100%" in result.stderr  # tqdm's bar, on stderr
    figures = json.loads((tmp_path / "figures.json").read_text())
    assert {row["op"] for row in figures["rows"]} == {"max_forward", "avg_backward"}
    assert all(row["seconds"]["numba_pool"] > 0 for row in figures["rows"])
