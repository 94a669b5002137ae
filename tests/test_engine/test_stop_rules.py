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


def first_failure(rule: PlateauStop, steps: list[int], values: list[float]) -> int | None:
    """The step at which the rule first says the rows are not learning."""
    for n in range(1, len(steps) + 1):
        if rule.not_learning(steps[:n], values[:n]) is not None:
            return steps[n - 1]
    return None


def test_a_signal_that_never_falls_is_not_learning_and_never_a_stop():
    steps = list(range(0, 301, 10))
    rule = PlateauStop(window=50)
    rising = [1.0 + s / 1000 for s in steps]
    flat = [1.0 for _ in steps]  # e.g. a learning rate of 0: the rows never move
    for values in (rising, flat):
        assert first_stop(rule, steps, values) is None  # never called learned
        assert first_failure(rule, steps, values) == 100  # after two windows
    reason = rule.not_learning(steps[:11], rising[:11])
    assert 'stayed at or above its start (1)' in reason and 'last 100 steps' in reason


def test_a_signal_thrown_back_above_its_start_is_not_learning():
    steps = list(range(0, 401, 10))
    values = decay(steps, 15, noise=0.0005)  # learns, then diverges from step 150 on
    values = [v + (2.0 if s >= 150 else 0.0) for s, v in zip(steps, values)]
    rule = PlateauStop(window=30)
    assert first_failure(rule, steps, values) == 200  # the measurements of two windows (150-200)


def test_a_learning_signal_is_never_not_learning():
    steps = list(range(0, 1001, 10))
    rule = PlateauStop(window=50, min_drop=0.02)
    for scale in (20, 60, 150):
        values = decay(steps, scale, noise=0.002, seed=scale)
        assert first_failure(rule, steps, values) is None
    noisy_start = [1.0 + (0.01 if s % 20 == 0 else -0.01) for s in steps]  # dips below its start
    assert first_failure(rule, steps, noisy_start) is None


def test_rows_that_barely_move_are_not_learning_even_while_the_signal_falls():
    steps = list(range(0, 301, 10))
    hair = [1.0 - 1e-7 * s for s in steps]  # a learning rate too small: falls by a hair, forever
    rule = PlateauStop(window=50)
    assert first_failure(rule, steps, hair) is None  # the signal alone cannot tell
    assert first_stop(rule, steps, hair) is None
    crawl = [1e-6 * s for s in steps]  # the rows' distance from their start
    walk = [0.01 * s for s in steps]  # a usable learning rate
    failures = [next((steps[n - 1] for n in range(1, len(steps) + 1)
                      if rule.not_learning(steps[:n], hair[:n], moved[:n])), None)
                for moved in (crawl, walk)]
    assert failures == [100, None]  # judged after two windows, as the signal is
    reason = rule.not_learning(steps[:11], hair[:11], crawl[:11])
    assert reason == ("in 100 steps the rows have moved 0.0001 of a word's size (under "
                      'stop.min_move=0.01; 0 turns this check off): they are still where they '
                      'started')
    for off in (1e-5, 0):
        assert PlateauStop(window=50, min_move=off).not_learning(steps[:11], hair[:11],
                                                                 crawl[:11]) is None
    assert PlateauStop(window=50, min_move=2.0).not_learning(steps[:11], hair[:11],
                                                             walk[:11]) is not None  # 1.0 < 2
    # A series that starts later (a weights-only load_from) judges its own two windows.
    assert rule.not_learning(steps[5:15], hair[5:15], crawl[5:15]) is None
    assert rule.not_learning(steps[5:16], hair[5:16], crawl[5:16]) is not None


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


def test_a_cap_before_min_steps_names_min_steps():
    rule = PlateauStop(window=30, min_steps=1000)
    assert rule.cap_warning(10, 0, 20, 'train_cfg.max_iters', 'hook') == (
        'hook.stop can first stop at step 1000 (stop.min_steps=1000), after '
        'train_cfg.max_iters=20: training runs to the cap. Raise train_cfg.max_iters or lower '
        'stop.min_steps.')
    assert 'shorten the window' in PlateauStop(window=30).cap_warning(10, 0, 20, 'cap', 'hook')


def test_min_steps():
    steps = list(range(0, 1001, 10))
    values = decay(steps, 20, noise=0.001)
    assert first_stop(PlateauStop(window=50, min_steps=600), steps, values) == 600


@pytest.mark.parametrize('kwargs', [dict(window=0), dict(window=2.5), dict(window='30'),
                                    dict(min_drop=1.0), dict(min_drop=-0.1),
                                    dict(min_drop=float('nan')), dict(min_drop='a'),
                                    dict(near_best=-1), dict(near_best=float('nan')),
                                    dict(min_steps=-1), dict(window=True), dict(min_move=-1e-3),
                                    dict(min_move=float('nan')), dict(min_move=float('inf'))])
def test_bad_parameters_are_refused(kwargs):
    with pytest.raises(ValueError, match='stop.'):
        PlateauStop(**kwargs)


@pytest.mark.parametrize('stop, message', [
    (dict(window=5), r'hook.stop.window \(5\) is shorter than the interval between measurements '
                     r'\(10\): the rule could never stop; give a window of at least 10 steps'),
    (dict(windw=20), r"hook.stop has unknown keys \['windw'\]; known: \['window', "),
    ('{}', r'hook.stop must be a dict of'),
    (dict(window='abc'), r"hook.stop.window must be a whole number of steps >= 1, got 'abc'"),
])
def test_config_errors_name_the_setting(stop, message):
    with pytest.raises(ValueError, match=message):
        PlateauStop.from_config(stop, interval=10, where='hook')


def test_a_window_of_one_interval_can_stop():
    steps = list(range(0, 1001, 10))
    rule = PlateauStop.from_config(dict(window=10), interval=10, where='hook')
    assert first_stop(rule, steps, decay(steps, 20, noise=0.0005)) is not None


def test_a_cap_while_still_falling_is_named_and_a_plateau_is_not():
    steps = list(range(0, 601, 10))
    rule = PlateauStop(window=30)
    slow = [0.0519 * (1 - 0.06 * s / 600) for s in steps]  # 0.3% a window of 30 steps
    assert rule.still_falling(steps, slow) == (
        'the learning signal fell by 6% of its start in all and was still falling (0.3% over '
        'the last 30 steps)')
    # lr 1e-9 on the toy world: 1.5e-5 of the signal in 600 steps, a share that says it all.
    frozen = [0.0519 * (1 - 1.5e-5 * s / 600) for s in steps]
    assert 'fell by 0.0015% of its start in all' in rule.still_falling(steps, frozen)
    assert rule.still_falling(steps, decay(steps, 20, noise=0.0)) is None  # flat at the end
    assert rule.still_falling(steps[:5], slow[:5]) is None  # under two windows: nothing to say
