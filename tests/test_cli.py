"""The numba-pool command: the installed console script and ``python -m numba_pool`` run as users
run them (in a subprocess, checking exit codes and output); the commands' work and argument handling
run in-process through ``cli.main``, which is quicker (no new interpreter, and the kernels this
process already compiled are reused)."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from numba_pool.tools import cli
from numba_pool.tools import selfcheck as _selfcheck


def numba_pool(*arguments, cwd=None, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "numba_pool", *arguments], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )


def run_command(arguments, capsys, monkeypatch, cwd=None):
    """(exit status, stdout, stderr) of ``numba-pool *arguments`` run in this process, in ``cwd``."""
    if cwd is not None:
        monkeypatch.chdir(cwd)
    try:
        status = cli.main(list(arguments))
    except SystemExit as exit_status:  # argparse's errors
        status = exit_status.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_the_console_script_is_installed():
    executable = shutil.which("numba-pool")
    assert executable, 'pip install -e ".[test]" installs the numba-pool command'
    result = subprocess.run([executable, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout


COMMANDS = ["demo", "bench", "check", "warm", "info"]


def test_the_command_line_starts_without_the_optional_frameworks():
    """``numba-pool warm`` in a Dockerfile, or ``--help``, should not pay PyTorch's import (about 1 s)."""
    code = "import sys; from numba_pool.tools import cli; cli.build_parser(); print([m for m in ('torch', 'matplotlib', 'dask') if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    """In-process (test_the_console_script_is_installed runs the installed command): argparse's exits."""
    with pytest.raises(SystemExit) as exit_status:
        cli.main([command, "--help"])
    assert exit_status.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: numba-pool {command}")


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
        (("warm", "--dims", "4"), "invalid choice: 4"),
        (("warm", "--ops", "max_pol"), "invalid choice: 'max_pol'"),
    ],
)
def test_wrong_arguments_get_argparse_errors(arguments, complaint, capsys):
    with pytest.raises(SystemExit) as exit_status:
        cli.main(list(arguments))
    assert exit_status.value.code == cli.EXIT_USAGE
    assert complaint in capsys.readouterr().err


def _write_png(path, height, width):
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def test_demo_with_a_tiny_image(tmp_path, monkeypatch, capsys):
    _write_png(tmp_path / "tiny.png", 12, 10)
    arguments = ("demo", "--image", "tiny.png", "--out", "result.png", "--kernel", "3", "--stride", "2")
    status, out, err = run_command(arguments, capsys, monkeypatch, tmp_path)
    assert status == 0, err
    for pooling in ("max pooling", "average pooling", "stochastic, training", "stochastic, inference", "global average"):
        assert pooling in out
    assert "12x10 RGB" in out and "wrote result.png" in out
    from PIL import Image

    with Image.open(tmp_path / "result.png") as picture:
        assert picture.format == "PNG" and picture.size[0] > 600


def test_demo_default_scene(tmp_path, monkeypatch, capsys):
    status, out, err = run_command(("demo", "--out", "scene.png"), capsys, monkeypatch, tmp_path)
    assert status == 0, err
    assert "generated scene 192x192" in out
    assert (tmp_path / "scene.png").stat().st_size > 10_000


def test_demo_refuses_a_missing_image(tmp_path, monkeypatch, capsys):
    status, _, err = run_command(("demo", "--image", "nowhere.png"), capsys, monkeypatch, tmp_path)
    assert status == cli.EXIT_USAGE
    assert "nowhere.png is not a readable file" in err


def test_demo_refuses_a_file_that_is_not_an_image(tmp_path, monkeypatch, capsys):
    (tmp_path / "notes.png").write_text("not a picture")
    status, _, err = run_command(("demo", "--image", "notes.png"), capsys, monkeypatch, tmp_path)
    assert status == cli.EXIT_USAGE
    assert "cannot read notes.png as an image" in err


def _write_bomb_png(path, side):
    """A 69-byte PNG whose header claims side x side pixels: Pillow's decompression-bomb check reads only that."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)  # 8-bit RGB
    idat = zlib.compress(b"\0" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if the demo or the benchmark starts working: refusals come first."""
    from numba_pool.tools import benchmark, demo as _demo

    def started(*args, **kwargs):
        raise AssertionError("the work started before the refusal")

    monkeypatch.setattr(_demo, "pool_every_way", started)
    monkeypatch.setattr(benchmark, "run", started)


def _refused(capsys, arguments, complaint):
    """Run the command in-process: exit status 2, one line on stderr naming the command, nothing on stdout."""
    assert cli.main(arguments) == cli.EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith(f"numba-pool {arguments[0]}: "), captured.err
    assert complaint in captured.err


@pytest.mark.parametrize(
    "arguments, complaint",
    [
        (["--image", "one.png"], "--kernel 2 is larger than the image (1x1); choose at most 1"),
        (["--kernel", "500"], "--kernel 500 is larger than the image (192x192); choose at most 192"),
        (["--out", "missing/result.png"], "--out missing/result.png: the directory missing does not exist"),
        (["--out", "one.png/result.png"], "the directory one.png does not exist"),
        (["--out", "result.bmpx"], "--out result.bmpx: cannot write a .bmpx file; use one of .avif, .eps"),
        (["--out", "."], "--out . is a directory; give a file name"),
        (["--image", "bomb.png"], "refusing to decode bomb.png: Image size (400000000 pixels) exceeds limit"),
    ],
)
def test_demo_refuses_unusable_arguments_before_any_work(arguments, complaint, tmp_path, monkeypatch, capsys, no_work):
    monkeypatch.chdir(tmp_path)
    _write_png(tmp_path / "one.png", 1, 1)
    _write_bomb_png(tmp_path / "bomb.png", 20000)  # 400 megapixels, over Pillow's default limit (2 x 89.5)
    _refused(capsys, ["demo", *arguments], complaint)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.png", "one.png"]  # nothing written


@pytest.mark.parametrize("how", ["permissions", "read-only file system"])
def test_demo_refuses_a_read_only_directory_before_any_work(how, tmp_path, monkeypatch, capsys, no_work):
    if how == "permissions":
        if os.geteuid() == 0:
            pytest.skip("root may write in a directory without write permission; the other case covers root")
        folder = tmp_path / "locked"
        folder.mkdir()
        folder.chmod(0o555)
        monkeypatch.chdir(tmp_path)
        out = "locked/result.png"
    else:
        if not os.path.isdir("/sys"):
            pytest.skip("needs Linux's /sys, which nobody can create files in")
        out = "/sys/result.png"
    _refused(capsys, ["demo", "--out", out], f"--out {out}: cannot write in the directory")


def test_demo_downscales_large_images_and_names_the_file_it_wrote(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "MAX_DEMO_MEGAPIXELS", 0.0003)  # 300 pixels, so a tiny image stands in for a huge one
    _write_png(tmp_path / "large.png", 30, 40)
    assert cli.main(["demo", "--image", "large.png", "--out", "result"]) == 0
    output = capsys.readouterr().out
    assert "downscaled large.png from 30x40 to 15x20 (the demo takes at most 0.0003 megapixels)" in output
    assert "image: large.png 15x20 RGB" in output
    assert "wrote result.png" in output and (tmp_path / "result.png").is_file() and not (tmp_path / "result").exists()


def test_bench_refuses_a_json_file_in_a_missing_directory_before_any_work(tmp_path, monkeypatch, capsys, no_work):
    monkeypatch.chdir(tmp_path)
    complaint = "--json missing/figures.json: the directory missing does not exist"
    _refused(capsys, ["bench", "--quick", "--json", "missing/figures.json"], complaint)


def test_the_benchmark_module_refuses_a_json_file_in_a_missing_directory_before_any_work(tmp_path, monkeypatch, capsys, no_work):
    from numba_pool.tools import benchmark

    monkeypatch.chdir(tmp_path)
    assert benchmark.main(["--quick", "--json", "missing/figures.json"]) == cli.EXIT_USAGE
    assert capsys.readouterr().err == "bench: --json missing/figures.json: the directory missing does not exist\n"


@pytest.mark.parametrize("seed, shown", [("-1", "-1"), ("one", "'one'")])
def test_check_refuses_a_seed_that_is_not_a_non_negative_integer(seed, shown, capsys):
    with pytest.raises(SystemExit) as exit_status:  # argparse's error: usage, then one line
        cli.main(["check", "--seed", seed])
    assert exit_status.value.code == cli.EXIT_USAGE
    assert f"argument --seed: expected a non-negative integer, got {shown}" in capsys.readouterr().err


def test_demo_without_matplotlib_names_the_extra(tmp_path):
    code = "import sys; sys.modules['matplotlib'] = None; from numba_pool.tools import cli; sys.exit(cli.main(['demo']))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == cli.EXIT_MISSING_EXTRA
    assert 'pip install "numba-pool[demo]"' in result.stderr


def test_check_passes_and_reports_every_op(capsys, monkeypatch):
    status, out, err = run_command(("check", "--cases", "1"), capsys, monkeypatch)  # the cases the mismatch test compiles too
    assert status == 0, out + err
    for name in _selfcheck.CHECKS:
        assert f"ok       cpu  {name}" in out
    assert "all ops agree with the NumPy reference" in out


def test_check_exits_1_on_a_mismatch(monkeypatch, capsys):
    working = _selfcheck.nb.avg_pool2d

    def off_by_one(x, *args, **options):  # a broken average pooling
        return working(x, *args, **options) + 1

    monkeypatch.setattr(_selfcheck, "nb", _Patched(_selfcheck.nb, avg_pool2d=off_by_one))
    cpu_only = list(itertools.islice(_selfcheck.backends(), 1))  # the CPU lines (the GPU ones run in the test above)
    monkeypatch.setattr(_selfcheck, "backends", lambda: iter(cpu_only))
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


@pytest.mark.parallel_kernels  # the kernels users get, as in the command run on its own
def test_bench_on_a_tiny_quick_set(tmp_path, capsys, monkeypatch):
    arguments = ("bench", "--quick", "--ops", "max_forward", "avg_backward", "--layout", "nchw", "--repeats", "1", "--json", "figures.json")
    status, out, err = run_command(arguments, capsys, monkeypatch, cwd=tmp_path)
    assert status == 0, err
    lines = out.splitlines()
    assert lines[1].split()[:3] == ["case", "op", "ours"]
    assert sum("max_forward" in line for line in lines) == 3  # k2s2 and k3s2 at the quick shape, and the tiny case
    assert "bench:" in err and "100%" in err  # tqdm's bar, on stderr
    figures = json.loads((tmp_path / "figures.json").read_text())
    assert {row["op"] for row in figures["rows"]} == {"max_forward", "avg_backward"}
    assert all(row["seconds"]["numba_pool"] > 0 for row in figures["rows"])
