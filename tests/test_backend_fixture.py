"""The ``backend`` fixture of tests/conftest.py: what the op tests rely on when they take it."""

import numpy as np
import pytest


@pytest.mark.parametrize("view", ["contiguous", "step"])
def test_put_then_get_gives_the_same_values_back(backend, view):
    values = np.arange(30, dtype=np.float32).reshape(2, 3, 5)
    on_backend = backend.put(values, view)
    assert np.array_equal(backend.get(on_backend), values)
    first, second = backend.get((on_backend, on_backend))
    assert np.array_equal(first, values) and np.array_equal(second, values)


@pytest.mark.backends("cuda", "dask")
def test_get_refuses_a_result_that_left_the_backend(backend):
    with pytest.raises(AssertionError, match="expected a"):
        backend.get(np.zeros(3))
