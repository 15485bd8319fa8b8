"""Smoke test of the NumPy CNN example: two short epochs for every pooling and head."""

import importlib.util
import pathlib

import pytest

# Checked without importing scikit-learn (about 1 s), which every test process would pay at collection.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="the example needs scikit-learn")
EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "digits_cnn.py"


def load_example():
    spec = importlib.util.spec_from_file_location("digits_cnn", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_two_tiny_epochs_run_every_combination(capsys):
    example = load_example()
    results = example.main(["--epochs", "2", "--limit", "200"])
    assert [(r["pooling"], r["head"]) for r in results] == [
        (p, h) for p in ("max", "average", "stochastic") for h in ("dense", "global-avg")
    ]
    counts = {r["head"]: r["parameters"] for r in results}
    assert counts == {"dense": 160 + 4640 + 512 * 10 + 10, "global-avg": 160 + 4640 + 330}
    for result in results:
        assert 0.0 <= result["test accuracy"] <= 1.0
        if result["head"] == "dense":  # the global-average head learns more slowly than two short epochs
            assert result["train accuracy"] > 0.5, result  # chance is 0.1
    assert "test acc" in capsys.readouterr().out
