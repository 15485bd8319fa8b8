"""numba_pool: pooling kernels for NumPy arrays, compiled by Numba.

Max and average pooling in 1, 2 and 3 dimensions, forward and backward, with
PyTorch's semantics (``torch.nn.functional``) and deterministic backward passes.
"""

from .functional import (
    avg_pool1d,
    avg_pool1d_backward,
    avg_pool2d,
    avg_pool2d_backward,
    avg_pool3d,
    avg_pool3d_backward,
    max_pool1d,
    max_pool1d_backward,
    max_pool2d,
    max_pool2d_backward,
    max_pool3d,
    max_pool3d_backward,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "avg_pool1d",
    "avg_pool1d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "avg_pool3d",
    "avg_pool3d_backward",
    "max_pool1d",
    "max_pool1d_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "max_pool3d",
    "max_pool3d_backward",
]
