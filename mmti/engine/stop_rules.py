"""When the learning signal says a concept is learned."""
import math
from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class PlateauStop:
    """Stop when the learning signal has stopped falling.

    The signal (the loss on a fixed batch) falls while the rows still learn
    and then wanders within its own noise. The rule compares the mean of the
    last ``window`` steps of measurements with the mean of the ``window``
    steps before them: when the newer window is no lower by more than
    ``min_drop`` of everything the signal has dropped since the start, the
    rows have stopped learning. A plateau is only taken where the latest
    measurement is within ``near_best`` of that drop from the lowest one: a
    large learning rate can throw the rows out of a good region for a while
    (the signal jumps up, which also flattens the window means), and the run
    should not end there.

    Args:
        window: Steps per window (measurements in it: window / interval).
        min_drop: Fraction of the total drop so far that the last window must
            still gain to go on.
        near_best: How far above the lowest measurement (as a fraction of
            the drop so far) the latest may be at a stop.
        min_steps: Never stop before this step.
        min_move: Rows that after two windows have moved less than this
            (in units of an average word's size) from where they started are
            not learning, whatever the signal does: a learning rate too small
            to move them makes the signal fall by a hair and never flatten.
            Adam moves each value by about the learning rate per step, so a
            usable rate moves the rows by about a word's size in that time.
            0 turns the check off.
    """

    window: int = 50
    min_drop: float = 0.02
    near_best: float = 0.05
    min_steps: int = 0
    min_move: float = 0.01

    def __post_init__(self):
        if not _is_whole(self.window) or self.window < 1:
            raise ValueError(f'stop.window must be a whole number of steps >= 1, got '
                             f'{self.window!r}.')
        if not _is_real(self.min_drop) or not 0 <= self.min_drop < 1:
            raise ValueError(f'stop.min_drop must be a number in [0, 1), got {self.min_drop!r}.')
        if not _is_real(self.near_best) or not self.near_best >= 0:
            raise ValueError(f'stop.near_best must be a number >= 0, got {self.near_best!r}.')
        if not _is_whole(self.min_steps) or self.min_steps < 0:
            raise ValueError(f'stop.min_steps must be a whole number of steps >= 0, got '
                             f'{self.min_steps!r}.')
        if not _is_real(self.min_move) or not 0 <= self.min_move < math.inf:
            raise ValueError(f'stop.min_move must be a number >= 0 (0: no check), got '
                             f'{self.min_move!r}.')

    @classmethod
    def from_config(cls, stop: dict, interval: int, where: str) -> 'PlateauStop':
        """The rule of a hook's ``stop`` setting, or one error naming the setting.

        A window shorter than the measuring interval would hold no
        measurement in one of its two halves, and the rule could never fire.
        """
        if not isinstance(stop, dict):
            raise ValueError(f'{where}.stop must be a dict of {_FIELDS} (or None to never stop), '
                             f'got {stop!r}.')
        unknown = sorted(set(stop) - set(_FIELDS))
        if unknown:
            raise ValueError(f'{where}.stop has unknown keys {unknown}; known: {list(_FIELDS)}.')
        try:
            rule = cls(**stop)
        except ValueError as err:
            raise ValueError(f'{where}.{err}') from None
        if rule.window < interval:
            raise ValueError(f'{where}.stop.window ({rule.window}) is shorter than the interval '
                             f'between measurements ({interval}): the rule could never stop; give '
                             f'a window of at least {interval} steps.')
        return rule

    def first_possible_stop(self, start: int = 0) -> int:
        """The earliest step the rule can stop at, in a series that starts at ``start``."""
        return max(self.min_steps, 2 * self.window + start)

    def cap_warning(self, interval: int, start: int, cap: int, cap_name: str,
                    where: str) -> str | None:
        """What to say when the step cap ``cap`` comes before the rule can first stop."""
        first = -(-self.first_possible_stop(start) // interval) * interval  # a measured step
        if first <= cap:
            return None
        if self.min_steps > 2 * self.window + start:
            why, fix = f'stop.min_steps={self.min_steps}', 'lower stop.min_steps'
        else:
            why, fix = (f'two windows of {self.window} steps, measured every {interval}',
                        'shorten the window')
        return (f'{where}.stop can first stop at step {first} ({why}), after {cap_name}={cap}: '
                f'training runs to the cap. Raise {cap_name} or {fix}.')

    def describe(self) -> dict:
        return asdict(self)

    def reason_to_stop(self, steps: list[int], values: list[float]) -> str | None:
        """Why training should stop after the last measurement (the concept is
        learned), or None to go on."""
        if not steps or steps[-1] < self.first_possible_stop(steps[0]):
            return None
        gain = self._last_window_gain(steps, values)
        total_drop = values[0] - min(values)
        if gain is None or total_drop <= 0:
            return None  # nothing learned yet: not_learning() judges that
        if values[-1] - min(values) > self.near_best * total_drop:
            return None  # thrown off: wait until the rows are back near their best
        if gain <= self.min_drop * total_drop:
            change = f'fell {gain:.3g}' if gain >= 0 else f'rose {-gain:.3g}'
            return (f'the learning signal {change} over the last {self.window} steps, '
                    f'under {self.min_drop:g} of its drop since the start ({total_drop:.3g})')
        return None

    def _last_window_gain(self, steps: list[int], values: list[float]) -> float | None:
        """Mean of the window before the last minus mean of the last window
        (positive while the signal falls); None before both hold a measurement."""
        last = steps[-1]
        newer = [v for s, v in zip(steps, values) if s > last - self.window]
        older = [v for s, v in zip(steps, values) if last - 2 * self.window < s <= last - self.window]
        if not newer or not older:
            return None
        return sum(older) / len(older) - sum(newer) / len(newer)

    def still_falling(self, steps: list[int], values: list[float]) -> str | None:
        """At a step cap: how the signal still fell over the last window, when
        it fell by more than the rule's ``min_drop`` (the concept may not be
        learned yet), and how much it fell in all (a learning rate too small
        to move the rows shows as a tiny share), or None."""
        if not steps or steps[-1] - steps[0] < 2 * self.window:
            return None
        gain = self._last_window_gain(steps, values)
        total_drop = values[0] - min(values)
        if gain is None or total_drop <= 0 or gain <= self.min_drop * total_drop:
            return None
        return (f'the learning signal fell by {_percent(total_drop / values[0])} of its start in '
                f'all and was still falling ({_percent(gain / values[0])} over the last '
                f'{self.window} steps)')

    def not_learning(self, steps: list[int], values: list[float],
                     moved: list[float] | None = None) -> str | None:
        """Why the rows are not learning, or None.

        The rows are not learning when every measurement of the last two
        windows is at or above the first one: the rows are no better than
        where they started (a learning rate that throws them off, or one
        too small to move them). Nor are they when ``moved`` (the rows'
        distance from their start at each measurement, in units of an
        average word's size) is still under ``min_move`` after two windows.
        Such rows are not a learned concept.
        """
        if not steps or steps[-1] < 2 * self.window + steps[0]:
            return None
        last = steps[-1]
        recent = [v for s, v in zip(steps, values) if s > last - 2 * self.window]
        if recent and min(recent) >= values[0]:
            return (f'the learning signal has stayed at or above its start ({values[0]:.3g}) for '
                    f'the last {2 * self.window} steps (now {values[-1]:.3g}, lowest since the '
                    f'start {min(values):.3g}): the rows are no better than where they started')
        if moved and moved[-1] < self.min_move:
            return (f'in {last - steps[0]} steps the rows have moved {moved[-1]:.2g} of a word\'s '
                    f'size (under stop.min_move={self.min_move:g}; 0 turns this check off): they '
                    'are still where they started')
        return None


#: The fix for rows that are not learning, as the hooks say it.
NOT_LEARNING_FIX = ('set optim_wrapper.optimizer.lr (too large throws the rows off, too small '
                    'leaves them where they started)')

_FIELDS = tuple(field.name for field in fields(PlateauStop))


def _percent(share: float) -> str:
    return f'{100 * share:.2g}%'


def _is_whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
