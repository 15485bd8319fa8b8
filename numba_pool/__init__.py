"""numba_pool: pooling kernels for NumPy arrays, compiled by Numba.

Max, average, stochastic, Lp-norm, global and adaptive pooling and max unpooling
in 1, 2 and 3 dimensions, forward and backward, with PyTorch's semantics
(``torch.nn.functional``) and deterministic backward passes; layer objects
for NumPy training loops in :mod:`numba_pool.layers`.
"""

from . import functional, layers
from .functional import *  # noqa: F401,F403  (every public function, generated from the op registry)
from .layers import *  # noqa: F401,F403  (every layer class)
from .layers import IntOrTuple
from .tools.warm import warm

__version__ = "0.1.0"

__all__ = ["__version__", "IntOrTuple", "warm", *layers.__all__, *functional.__all__]
