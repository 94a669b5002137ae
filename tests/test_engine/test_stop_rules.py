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
    reason = None
    stop = first_stop(PlateauStop(window=50), steps, rising)
    assert stop == 100
    reason = PlateauStop(window=50).reason_to_stop(steps[:11], rising[:11])
    assert 'fell' in reason and '50 steps' in reason


def test_min_steps_and_resumed_series():
    steps = list(range(0, 1001, 10))
    values = decay(steps, 20, noise=0.001)
    assert first_stop(PlateauStop(window=50, min_steps=600), steps, values) == 600
    # A series that starts at a resumed step is judged on its own start.
    assert first_stop(PlateauStop(window=50), steps[50:], values[50:]) == steps[50] + 100


@pytest.mark.parametrize('kwargs', [dict(window=0), dict(min_drop=1.0), dict(min_drop=-0.1)])
def test_bad_parameters_are_refused(kwargs):
    with pytest.raises(ValueError, match='stop.'):
        PlateauStop(**kwargs)
