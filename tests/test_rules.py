"""The scalar rules of ``numba_pool.backends.rules`` on hand-made cases, and the vectorised CPU forms
that restate them (comments "rules.<name>" in the kernels) against the rule over random inputs.

The rules are called directly where they take scalars (an ``@njit`` function runs from Python);
the ones taking arrays, and the kernels, through small compiled loops.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from numba import njit

from numba_pool import _rng
from numba_pool.backends import rules
from numba_pool.backends.cpu import _common
from numba_pool.backends.cpu import max_pool as cpu_max_pool
from numba_pool.backends.cpu import stochastic_pool as cpu_stochastic
from helpers import serial_twin

NAN, INF = np.nan, np.inf


# --------------------------------------------------------------------------- positions and windows


def test_plane_position_inverts_flat_plane_index():
    depth, height, width = 3, 4, 5
    for flat in range(depth * height * width):
        position = rules.plane_position(np.int64(flat), height, width)
        assert position == np.unravel_index(flat, (depth, height, width))
        assert rules.flat_plane_index(*position, height, width) == flat


@pytest.mark.parametrize(
    "start, kernel, length, padding, expected",
    [
        (0, 3, 5, 0, (0, 3, 3)),  # inside
        (-1, 3, 5, 1, (0, 2, 3)),  # left padding counts in the padded size
        (3, 3, 5, 1, (3, 5, 3)),  # right padding counts too
        (4, 3, 5, 1, (4, 5, 2)),  # ceil_mode's last window: clipped to the padded input first
        (5, 3, 5, 1, (5, 5, 1)),  # only padding (an empty in-input part)
        (-2, 5, 1, 2, (0, 1, 5)),  # wider than the input on both sides
    ],
)
def test_window_extent(start, kernel, length, padding, expected):
    assert rules.window_extent(start, kernel, length, padding) == expected


def valid_tap_list(start, kernel, dilation, length):
    return [i for i in range(kernel) if 0 <= start + i * dilation < length]


@pytest.mark.parametrize(
    "start, kernel, dilation, length, expected",
    [(0, 3, 1, 5, (0, 3)), (-1, 3, 1, 5, (1, 3)), (3, 3, 1, 5, (0, 2)), (-3, 3, 2, 5, (2, 3)), (-1, 4, 3, 7, (1, 3))],
)
def test_valid_taps_by_hand(start, kernel, dilation, length, expected):
    assert rules.valid_taps(start, kernel, dilation, length) == expected


def test_valid_taps_are_the_taps_inside_the_input():
    for start, kernel, dilation, length in itertools.product(range(-7, 8), range(1, 6), range(1, 4), range(1, 7)):
        first, stop = rules.valid_taps(start, kernel, dilation, length)
        taps = valid_tap_list(start, kernel, dilation, length)
        assert list(range(first, stop)) == taps, (start, kernel, dilation, length)


def test_interior_windows_are_those_without_padding():
    """cpu._common.interior_windows: the windows whose taps are all valid (``rules.valid_taps``)."""
    for length, kernel, stride, dilation in itertools.product(range(1, 9), range(1, 5), range(1, 4), range(1, 3)):
        for padding in range(kernel // 2 + 1):
            out_length = (length + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
            if out_length < 1:
                continue
            first, stop = _common.interior_windows(out_length, length, kernel, stride, padding, dilation)
            whole = [o for o in range(out_length)
                     if rules.valid_taps(o * stride - padding, kernel, dilation, length) == (0, kernel)]
            assert list(range(first, stop)) == whole, (length, kernel, stride, padding, dilation)


# --------------------------------------------------------------------------- the NaN-aware maximum


def fold_maximum(values):
    """(value, position) of the running maximum of ``values`` in order, by ``rules.replaces_maximum``."""
    best, where = values[0], -1
    for i, value in enumerate(values):
        if rules.replaces_maximum(value, best, where >= 0):
            best, where = value, i
    return best, where


@pytest.mark.parametrize(
    "values, expected_position",
    [
        ([1.0, 3.0, 2.0], 1),
        ([3.0, 1.0, 3.0], 0),  # ties keep the earlier element
        ([1.0, NAN, 5.0], 1),  # NaN beats later numbers
        ([NAN, 2.0, NAN, 7.0], 2),  # the last NaN wins
        ([-INF, -INF], 0),  # -inf (padding's value in PyTorch) is an ordinary number
        ([0.0, -0.0], 0),  # +0 and -0 tie
        ([-0.0, 0.0], 0),
    ],
)
def test_replaces_maximum_by_hand(values, expected_position):
    assert fold_maximum(values)[1] == expected_position


SPECIAL = [NAN, -INF, -1.0, -0.0, 0.0, 1.0, INF]


def test_seeded_maximum_is_replaces_maximum_once_seeded():
    """rules.replaces_seeded_maximum (branch-free, the vectorised max kernels' select) against the rule."""
    for value, best in itertools.product(SPECIAL, SPECIAL):
        assert bool(rules.replaces_seeded_maximum(value, best)) == rules.replaces_maximum(value, best, True)
        assert rules.replaces_maximum(value, best, False)  # the first element always seeds


def test_beats_maximum_is_a_total_order():
    candidates = [(value, flat) for value in SPECIAL for flat in range(3)]
    for (a, i), (b, j) in itertools.product(candidates, candidates):
        if i != j:
            assert bool(rules.beats_maximum(a, i, b, j)) != bool(rules.beats_maximum(b, j, a, i)), (a, i, b, j)


def test_beats_maximum_in_any_order_agrees_with_replaces_maximum_in_window_order():
    """rules.beats_maximum (used by trees, tiles and column maxima) against ``replaces_maximum``."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        values = rng.choice(np.array([NAN, -INF, -1.0, 0.0, 1.0, 2.0]), size=int(rng.integers(1, 9)))
        best, where = fold_maximum(values)
        order = rng.permutation(values.size)
        winner = order[0]
        for i in order[1:]:
            if rules.beats_maximum(values[i], i, values[winner], winner):
                winner = i
        assert winner == where, values
        np.testing.assert_array_equal(values[winner], best)


# --------------------------------------------------------------------------- the stochastic window


def test_weight_scale_by_hand():
    assert rules.weight_scale(INF) == rules.INFINITE_WEIGHTS
    for nothing in (0.0, -3.0, -INF, NAN):
        assert rules.weight_scale(nothing) == 1.0
    assert rules.weight_scale(1.0) == 0.5
    assert rules.weight_scale(0.75) == 1.0
    assert rules.weight_scale(1e300) * 1e300 < 1.0
    assert np.isfinite(rules.weight_scale(5e-324))  # the cap keeps the factor of subnormals finite
    for largest in (3.0, 1e-300, 1.7976931348623157e308, 2.2250738585072014e-308):
        assert 0.5 <= largest * rules.weight_scale(largest) < 1.0


def test_scaled_weight_by_hand():
    assert rules.scaled_weight(3.0, 0.25) == 0.75
    assert rules.scaled_weight(-3.0, 0.25) == 0.0
    assert rules.scaled_weight(NAN, 0.25) == 0.0
    assert rules.scaled_weight(INF, rules.INFINITE_WEIGHTS) == 1.0
    assert rules.scaled_weight(1e308, rules.INFINITE_WEIGHTS) == 0.0


def plane_of(values):
    return np.asarray(values, np.float64).reshape(1, 1, -1)


def whole(plane):
    return (0, plane.shape[0], 0, plane.shape[1], 0, plane.shape[2])


@pytest.mark.parametrize(
    "values, expected",
    [
        ([1.0, 3.0], 2.5),  # (1 * 1 + 3 * 3) / (1 + 3)
        ([-1.0, -3.0], -2.0),  # no weights: the mean
        ([-INF, 1.0], 1.0),  # -inf weighs nothing
        ([-INF, -INF], -INF),
        ([INF, 2.0], INF),
        ([1e200, 1e200], 1e200),  # no overflow
    ],
)
def test_window_output_inference_by_hand(values, expected):
    plane = plane_of(values)
    assert rules.window_output(plane, whole(plane), False, np.uint64(0), 0) == (expected, -1)


def test_window_output_nan_gives_nan_and_the_first_nan():
    plane = plane_of([1.0, NAN, 2.0, NAN])
    for training in (False, True):
        value, picked = rules.window_output(plane, whole(plane), training, np.uint64(3), 5)
        assert np.isnan(value) and picked == 1


def expected_pick(values, draw):
    """The element a draw picks, by the definition: weights max(a, 0) scaled, running sums, ties to counts."""
    weights = np.maximum(values, 0.0)
    if np.isinf(weights).any():
        weights = np.isinf(weights).astype(np.float64)
    elif weights.max() > 0:
        weights = weights * rules.weight_scale(weights.max())
    if weights.sum() > 0:
        running = np.cumsum(weights)
        passed = np.flatnonzero((running > draw * running[-1]) & (weights > 0))  # running[-1]: the rule's sequential sum
        return int(passed[0]) if passed.size else int(np.flatnonzero(weights > 0)[-1])
    return int(draw * values.size)


def test_window_output_training_picks_by_its_draw():
    """Clipped windows of a 3-D plane: the flat index is the plane's, the draw ``uniform(seed, counter)``."""
    rng = np.random.default_rng(1)
    plane = rng.standard_normal((3, 4, 5))
    plane[0, 1, 1:3] = INF
    for _ in range(200):
        box = []
        for length in plane.shape:
            first = int(rng.integers(0, length))
            box += [first, int(rng.integers(first + 1, length + 1))]
        box = tuple(box)
        seed, counter = np.uint64(rng.integers(0, 2**63)), int(rng.integers(0, 2**40))
        value, picked = rules.window_output(plane, box, True, seed, counter)
        d, h, w = (np.arange(box[2 * axis], box[2 * axis + 1]) for axis in range(3))
        flats = ((d[:, None, None] * 4 + h[None, :, None]) * 5 + w[None, None, :]).ravel()
        values = plane.ravel()[flats]
        chosen = expected_pick(values, _rng.uniform(seed, counter))
        assert (value, picked) == (values[chosen], flats[chosen]), box


def test_window_output_without_weights_picks_uniformly():
    plane = plane_of([-1.0, -2.0, -3.0, -4.0])
    for counter in range(20):
        draw = _rng.uniform(np.uint64(9), counter)
        assert rules.window_output(plane, whole(plane), True, np.uint64(9), counter)[1] == int(draw * 4)


def test_inference_gradient_is_the_derivative_of_the_expected_value():
    rng = np.random.default_rng(2)
    for _ in range(20):
        values = rng.uniform(-1.0, 3.0, 6)
        plane = plane_of(values)
        weight_sum, square_sum, _, count, _, scale = rules.window_statistics(plane, whole(plane))
        for i in range(values.size):
            step = 1e-6
            up, down = values.copy(), values.copy()
            up[i] += step
            down[i] -= step
            numeric = (rules.window_output(plane_of(up), whole(plane), False, np.uint64(0), 0)[0]
                       - rules.window_output(plane_of(down), whole(plane), False, np.uint64(0), 0)[0]) / (2 * step)
            exact = rules.inference_gradient(1.0, values[i], weight_sum, square_sum, count, scale)
            assert exact == pytest.approx(numeric, rel=1e-5, abs=1e-6)


def test_inference_gradient_by_hand():
    plane = plane_of([INF, 1.0, INF])
    weight_sum, square_sum, _, count, _, scale = rules.window_statistics(plane, whole(plane))
    assert [rules.inference_gradient(1.0, v, weight_sum, square_sum, count, scale) for v in (INF, 1.0)] == [0.5, 0.0]
    plane = plane_of([-1.0, -2.0])
    weight_sum, square_sum, _, count, _, scale = rules.window_statistics(plane, whole(plane))
    assert rules.inference_gradient(1.0, -1.0, weight_sum, square_sum, count, scale) == 0.5


# --------------------------------------------------------------------------- vectorised forms against their rules


def test_uniform_after_mix_is_uniform():
    """_rng.uniform_after_mix (the lane kernels mix the seed once per call) against ``uniform``."""
    rng = np.random.default_rng(3)
    for seed in (0, 1, 2**64 - 1, *rng.integers(0, 2**63, 3)):
        for counter in (0, 1, 2**62, *rng.integers(0, 2**62, 20)):
            seed, counter = np.uint64(seed), int(counter)
            mixed = np.uint64(_rng.mix64(seed))  # numba returns a uint64 to Python as an int
            assert _rng.uniform_after_mix(mixed, counter) == _rng.uniform(seed, counter)


@njit(cache=True)
def lane_and_rule_scales(largest):
    scale = np.empty_like(largest)
    cpu_stochastic.lane_weight_scales(largest, scale, largest.size)
    return scale, np.array([rules.weight_scale(value) for value in largest])


def test_lane_weight_scales_is_weight_scale():
    rng = np.random.default_rng(4)
    largest = np.concatenate([
        np.ldexp(1.0, np.arange(-1074, 1024, 7)), np.array([0.0, -0.0, INF, -INF, NAN, 5e-324, 1.7976931348623157e308]),
        rng.integers(0, 2**63, 2000, dtype=np.uint64).view(np.float64),  # every exponent field, NaN and inf
    ])
    lanes, rule = lane_and_rule_scales(largest)
    np.testing.assert_array_equal(lanes.view(np.uint64), rule.view(np.uint64))


@njit(cache=True)
def lane_and_rule_expected_values(statistics):
    lanes, rule = np.empty(len(statistics)), np.empty(len(statistics))
    for i in range(len(statistics)):
        weight_sum, square_sum, plain_sum = statistics[i, 0], statistics[i, 1], statistics[i, 2]
        count, scale, nan_flat = statistics[i, 3], statistics[i, 4], statistics[i, 5]
        lanes[i] = cpu_stochastic._lane_expected_value(weight_sum, square_sum, plain_sum, count, scale, nan_flat)
        rule[i] = np.nan if nan_flat >= 0 else rules.expected_value(weight_sum, square_sum, plain_sum, count, scale)
    return lanes, rule


def test_lane_expected_value_is_expected_value():
    rng = np.random.default_rng(5)
    statistics = [(w, s, p, c, scale, nan) for w, s, p, c, scale, nan in zip(
        rng.choice([0.0, 0.5, 3.0, 1e-300], 500), rng.uniform(0, 2, 500), rng.standard_normal(500),
        rng.integers(1, 9, 500).astype(np.float64), rng.choice([rules.INFINITE_WEIGHTS, 1.0, 2.0**-20, 2.0**900], 500),
        rng.choice([-1.0, -1.0, -1.0, 4.0], 500))]
    lanes, rule = lane_and_rule_expected_values(np.array(statistics))
    np.testing.assert_array_equal(lanes.view(np.uint64), rule.view(np.uint64))


@njit(cache=True)
def lane_and_rule_window_outputs(row, kernel, stride, lanes, training, seed):
    """``_lane_window_outputs`` for ``lanes`` windows of a 1-D row, and ``rules.window_output`` for each."""
    plane = row.reshape(1, 1, row.size)
    padded = -(-lanes // cpu_stochastic.LANE_PADDING) * cpu_stochastic.LANE_PADDING
    taps, tap_flats = np.empty((kernel, padded)), np.empty(kernel, np.int64)
    for tap in range(kernel):
        tap_flats[tap] = tap
        for j in range(lanes):
            taps[tap, j] = row[tap + j * stride]
    statistics = np.empty((cpu_stochastic._STATISTICS_ROWS, padded))
    marks = np.empty((cpu_stochastic._MARK_ROWS, padded), np.int64)
    values, picked = np.empty(lanes), np.full(lanes, -1)
    cpu_stochastic._lane_window_outputs(taps, tap_flats, kernel, lanes, stride, training, _rng.mix64(seed), 100, 1,
                                        statistics, marks, values, picked, True)
    expected_values, expected_picked = np.empty(lanes), np.full(lanes, -1)
    for j in range(lanes):
        box = (0, 1, 0, 1, j * stride, j * stride + kernel)
        expected_values[j], expected_picked[j] = rules.window_output(plane, box, training, seed, 100 + j)
    return values, picked, expected_values, expected_picked


@pytest.mark.parametrize("training", [False, True])
def test_lane_window_outputs_are_window_output(training):
    """The lane passes (rules.window_statistics, pick_element, window_output vectorised) bit for bit."""
    rng = np.random.default_rng(6 + training)
    for _ in range(30):
        kernel, stride, lanes = int(rng.integers(1, 6)), int(rng.integers(1, 3)), int(rng.integers(1, 40))
        row = rng.choice(np.array([NAN, -INF, INF, -1.0, 0.0, 1e300, 2.0, 0.5]), (lanes - 1) * stride + kernel,
                         p=[0.02, 0.05, 0.02, 0.2, 0.2, 0.01, 0.3, 0.2])
        row[rng.random(row.size) < 0.3] = rng.standard_normal()
        values, picked, expected_values, expected_picked = lane_and_rule_window_outputs(
            row, kernel, stride, lanes, training, np.uint64(rng.integers(0, 2**63)))
        np.testing.assert_array_equal(values.view(np.uint64), expected_values.view(np.uint64))
        if training:
            np.testing.assert_array_equal(picked, expected_picked)


@njit(cache=True)
def rule_max_pool(x, kernel, stride, padding, dilation, out, indices):
    """Max pooling of a canonical view as a scalar loop over ``valid_taps`` and ``replaces_maximum``."""
    depth, height, width = x.shape[2], x.shape[3], x.shape[4]
    for n, c, od, oh, ow in np.ndindex(out.shape):
        starts = (od * stride[0] - padding[0], oh * stride[1] - padding[1], ow * stride[2] - padding[2])
        d_first, d_stop = rules.valid_taps(starts[0], kernel[0], dilation[0], depth)
        h_first, h_stop = rules.valid_taps(starts[1], kernel[1], dilation[1], height)
        w_first, w_stop = rules.valid_taps(starts[2], kernel[2], dilation[2], width)
        best, where = x[n, c, 0, 0, 0], -1
        for i in range(d_first, d_stop):
            for j in range(h_first, h_stop):
                for k in range(w_first, w_stop):
                    d, h, w = starts[0] + i * dilation[0], starts[1] + j * dilation[1], starts[2] + k * dilation[2]
                    if rules.replaces_maximum(x[n, c, d, h, w], best, where >= 0):
                        best, where = x[n, c, d, h, w], rules.flat_plane_index(d, h, w, height, width)
        out[n, c, od, oh, ow], indices[n, c, od, oh, ow] = best, where


@pytest.mark.parametrize("layout", ["direct", "separable", "channels_last"])
def test_max_kernels_follow_replaces_maximum(layout):
    """The CPU max kernels (their selects restate the rule vectorised; the separable kernel's column
    maxima decide by ``beats_maximum``) against a scalar loop over the rule, on NaN- and tie-heavy inputs."""
    rng = np.random.default_rng(["direct", "separable", "channels_last"].index(layout))
    for _ in range(12):
        kernel = (1, int(rng.integers(1, 4)), int(rng.integers(1, 5)))
        stride = (1, int(rng.integers(1, 3)), int(rng.choice([1, 2])))
        dilation = (1, 1, 1) if layout == "direct" else (1, int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        padding = (0, int(rng.integers(0, kernel[1] // 2 + 1)), int(rng.integers(0, kernel[2] // 2 + 1)))
        x = rng.choice(np.array([NAN, -INF, -1.0, 0.0, 1.0, 2.0]), (2, 3, 1, 7, int(rng.integers(9, 30))))
        spatial = [(length + 2 * p - d * (k - 1) - 1) // s + 1
                   for length, k, s, p, d in zip(x.shape[2:], kernel, stride, padding, dilation)]
        out, indices = np.empty((2, 3, *spatial)), np.empty((2, 3, *spatial), np.int64)
        rule_max_pool(x, kernel, stride, padding, dilation, out, indices)
        got, got_indices = np.empty_like(out), np.empty_like(indices)
        if layout == "channels_last":
            view = (0, 2, 3, 4, 1)
            x_last = np.ascontiguousarray(x.transpose(view))
            serial_twin(cpu_max_pool._forward_channels_last)(x_last, kernel, stride, padding, dilation, got.transpose(view),
                                                        got_indices.transpose(view), True)
        elif layout == "direct":
            assert cpu_max_pool._takes_direct_kernel(x, kernel, stride, padding, dilation)
            blocks = 3
            best = np.empty((blocks, 2 * cpu_max_pool.RUN_CAPACITY))
            keys = np.empty((blocks, 2 * cpu_max_pool.RUN_CAPACITY), np.int32)
            serial_twin(cpu_max_pool._max_pool_forward_direct)(x, kernel, stride, padding, got, got_indices, True, best, keys)
        else:
            blocks, columns = 3, 6  # narrow buffers: rows cut into tiles, some windows wider than a tile
            best, keys = np.empty((blocks, columns)), np.empty((blocks, columns), np.int64)
            serial_twin(cpu_max_pool._max_pool_forward_kernel)(x, kernel, stride, padding, dilation, got, got_indices, True,
                                                               best, keys)
        np.testing.assert_array_equal(got, out)
        np.testing.assert_array_equal(got_indices, indices)
