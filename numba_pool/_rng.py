"""A counter-based random generator: a pure function of (seed, counter).

Kernels draw the random number for an output element from its *logical*
position, not from a stream, so the same seed gives the same samples whatever
the thread count, the memory layout or (with the CUDA backend) the device.
The mixing function is splitmix64's finaliser; its constants are the
published ones for that generator.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_TO_UNIT = 1.0 / 9007199254740992.0  # 2**-53: 53 random bits -> [0, 1)


@njit(inline="always", cache=True)
def mix64(value):
    """splitmix64's bijective finaliser on a uint64."""
    value = (value ^ (value >> np.uint64(30))) * _MIX_1
    value = (value ^ (value >> np.uint64(27))) * _MIX_2
    return value ^ (value >> np.uint64(31))


@njit(inline="always", cache=True)
def uniform(seed, counter):
    """A float64 in [0, 1) for ``counter`` (an int >= 0) in the stream named by ``seed`` (a uint64)."""
    return uniform_after_mix(mix64(seed), counter)


@njit(inline="always", cache=True)
def uniform_after_mix(mixed_seed, counter):
    """``uniform(seed, counter)`` given ``mixed_seed = mix64(seed)``, for kernels that mix the seed once per call."""
    state = mixed_seed + (np.uint64(counter) + np.uint64(1)) * _GOLDEN_GAMMA
    return np.float64(mix64(state) >> np.uint64(11)) * _TO_UNIT


@njit(inline="always", cache=True)
def output_counter(origin, shape, n, c, d, h, w):
    """The counter of output (n, c, d, h, w) of a pooling, or of a block of one: its flat position in
    the whole (N, C, D, H, W) output of size ``shape``, the block starting at ``origin`` there."""
    n, c, d, h, w = n + origin[0], c + origin[1], d + origin[2], h + origin[3], w + origin[4]
    return (((n * shape[1] + c) * shape[2] + d) * shape[3] + h) * shape[4] + w


@njit(cache=True)
def uniforms(seed, counters):
    """``uniform(seed, counter)`` for each counter of a 1-D int64 array, for draws made on the host."""
    mixed_seed = mix64(seed)
    result = np.empty(counters.size, np.float64)
    for i in range(counters.size):
        result[i] = uniform_after_mix(mixed_seed, counters[i])
    return result


def seed_from(seed, op: str) -> np.uint64:
    """Turn a user's ``seed`` (None, an int or a numpy Generator) into the kernel's uint64."""
    if seed is None:
        return np.uint64(np.random.default_rng().integers(0, 2**63))
    if isinstance(seed, np.random.Generator):
        return np.uint64(seed.integers(0, 2**63))
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, (bool, np.bool_)):
        if not 0 <= seed < 2**64:  # larger seeds would alias smaller ones
            raise ValueError(f"{op}: seed must be None, an int from 0 to 2**64 - 1 or a numpy.random.Generator; got {seed}")
        return np.uint64(int(seed))
    raise TypeError(
        f"{op}: seed must be None, an int from 0 to 2**64 - 1 or a numpy.random.Generator; got {seed!r} of type {type(seed).__name__}"
    )
