"""When the learning signal says a concept is learned."""
from dataclasses import asdict, dataclass


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
    """

    window: int = 50
    min_drop: float = 0.02
    near_best: float = 0.05
    min_steps: int = 0

    def __post_init__(self):
        if self.window < 1:
            raise ValueError(f'stop.window must be >= 1 step, got {self.window}.')
        if not 0 <= self.min_drop < 1:
            raise ValueError(f'stop.min_drop must be in [0, 1), got {self.min_drop}.')
        if self.near_best < 0:
            raise ValueError(f'stop.near_best must be >= 0, got {self.near_best}.')

    def describe(self) -> dict:
        return asdict(self)

    def reason_to_stop(self, steps: list[int], values: list[float]) -> str | None:
        """Why training should stop after the last measurement, or None to go on."""
        if not steps or steps[-1] < max(self.min_steps, 2 * self.window + steps[0]):
            return None
        last = steps[-1]
        newer = [v for s, v in zip(steps, values) if s > last - self.window]
        older = [v for s, v in zip(steps, values) if last - 2 * self.window < s <= last - self.window]
        if not newer or not older:
            return None
        total_drop = values[0] - min(values)
        gain = sum(older) / len(older) - sum(newer) / len(newer)
        if total_drop <= 0:
            return (f'the learning signal has not fallen below its start ({values[0]:.3g}) in '
                    f'{last - steps[0]} steps')
        if values[-1] - min(values) > self.near_best * total_drop:
            return None  # thrown off: wait until the rows are back near their best
        if gain <= self.min_drop * total_drop:
            return (f'the learning signal fell {gain:.3g} over the last {self.window} steps, '
                    f'under {self.min_drop:g} of its drop since the start ({total_drop:.3g})')
        return None
