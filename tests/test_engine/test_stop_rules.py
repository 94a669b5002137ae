"""PlateauStop on synthetic learning signals: stops at a plateau, never on a fall."""
import math
import random

import pytest

from mmti.engine.stop_rules import PlateauStop


def first_stop(rule: PlateauStop, steps: list[int], values: list[float]) -> int | None:
    """The step at which the rule, asked after every measurement, first says stop."""
    for n in range(1, len(steps) + 1):
        if rule.reason_to_stop(steps[:n], values[:n]) is not None:
            return steps[n - 1]
    return None


def decay(steps, scale, floor=1.0, height=1.0, noise=0.0, seed=0):
    rng = random.Random(seed)
    return [floor + height * math.exp(-s / scale) + rng.gauss(0, noise) for s in steps]


def test_stops_soon_after_the_signal_flattens():
    steps = list(range(0, 1001, 10))
    rule = PlateauStop(window=50, min_drop=0.02)
    for scale in (20, 60, 150):
        stop = first_stop(rule, steps, decay(steps, scale, noise=0.002, seed=scale))
        assert stop is not None
        # exp(-stop/scale) <~ 2%: the fall is over, and not much later than that
        remaining = math.exp(-stop / scale)
        assert remaining < 0.1, (scale, stop)
        assert stop < 8 * scale + 2 * rule.window, (scale, stop)


def test_never_stops_while_the_signal_still_falls():
    steps = list(range(0, 1001, 10))
    falling = [1.0 - s / 2000 for s in steps]  # a steady fall, no plateau
    assert first_stop(PlateauStop(window=50, min_drop=0.02), steps, falling) is None


def test_later_plateau_means_later_stop():
    steps = list(range(0, 2001, 10))
    rule = PlateauStop(window=50, min_drop=0.02)
    stops = [first_stop(rule, steps, decay(steps, scale, noise=0.001)) for scale in (30, 120, 400)]
    assert stops[0] < stops[1] < stops[2]


def test_a_signal_that_never_falls_stops_after_two_windows():
    steps = list(range(0, 301, 10))
    rising = [1.0 + s / 1000 for s in steps]
    assert first_stop(PlateauStop(window=50), steps, rising) == 100
    reason = PlateauStop(window=50).reason_to_stop(steps[:11], rising[:11])
    assert 'has not fallen below its start' in reason and '100 steps' in reason


def test_no_stop_while_thrown_off_by_a_spike():
    steps = list(range(0, 401, 10))
    values = decay(steps, 15, noise=0.0005)
    rule = PlateauStop(window=30, min_drop=0.02)
    calm = first_stop(rule, steps, values)
    assert calm is not None
    # The same run thrown off just before it would have stopped, back 60 steps later.
    spiked = [v + (0.3 if calm - 10 <= s < calm + 50 else 0.0) for s, v in zip(steps, values)]
    for n in range(1, len(steps) + 1):
        if calm - 10 <= steps[n - 1] < calm + 50:  # never inside the spike
            assert rule.reason_to_stop(steps[:n], spiked[:n]) is None
    assert first_stop(rule, steps, spiked) >= calm + 50


def test_min_steps():
    steps = list(range(0, 1001, 10))
    values = decay(steps, 20, noise=0.001)
    assert first_stop(PlateauStop(window=50, min_steps=600), steps, values) == 600


@pytest.mark.parametrize('kwargs', [dict(window=0), dict(min_drop=1.0), dict(min_drop=-0.1),
                                    dict(near_best=-1)])
def test_bad_parameters_are_refused(kwargs):
    with pytest.raises(ValueError, match='stop.'):
        PlateauStop(**kwargs)
