"""Stop at the first NaN/inf loss or parameter instead of saving garbage."""
import torch
from mmengine.hooks import Hook

from mmti.registry import HOOKS
from .periodic_hook import unwrap_model
from .non_finite import NonFiniteLossError, stop_message
from .sync_points import is_sync_point


def trainable_parameters(runner) -> dict[str, torch.Tensor]:
    """``{name: parameter}`` of what the optimizer updates."""
    model = unwrap_model(runner.model)
    names = {id(p): n for n, p in model.named_parameters()}
    params = {}
    for group in runner.optim_wrapper.param_groups:
        for param in group['params']:
            params.setdefault(names.get(id(param), f'param_{len(params)}'), param)
    return params


class _FirstBad:
    """The first step at which a flag was set, kept on the device (no sync)."""

    def __init__(self):
        self.step = None
        self.value = None

    def update(self, bad: torch.Tensor, step: int, value: torch.Tensor) -> None:
        if self.step is None:
            self.step = torch.zeros((), dtype=torch.long, device=bad.device)
            self.value = torch.zeros((), device=bad.device)
        new = bad & (self.step == 0)
        # torch.full, not torch.tensor: no host-to-device copy to wait for.
        self.step = torch.where(new, torch.full((), step, dtype=torch.long, device=bad.device),
                                self.step)
        self.value = torch.where(new, value.float(), self.value)

    def read(self) -> tuple[int, float] | None:
        if self.step is None or not int(self.step):
            return None
        return int(self.step), float(self.value)


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Raise :class:`NonFiniteLossError` when the loss or a trainable
    parameter is no longer finite, before anything is saved from it.

    An update after a finite loss can still blow the parameters up (an
    absurd learning rate), so both are watched. The check costs no per-step
    sync: the first bad iteration is tracked on the device and read out only
    where something would be saved or logged (:func:`is_sync_point`). Its
    priority puts it before every saving hook, so neither
    ``learned_embeds*.safetensors`` nor a checkpoint is written from
    poisoned rows; the message names the last good files and the fix.
    """

    priority = 'ABOVE_NORMAL'

    def before_train(self, runner) -> None:
        self._loss = _FirstBad()
        self._params = _FirstBad()
        self._trainable = trainable_parameters(runner)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        step = runner.iter + 1
        loss = (outputs or {}).get('loss')
        if isinstance(loss, torch.Tensor):
            loss = loss.detach().float().reshape(())
            self._loss.update(~torch.isfinite(loss), step, loss)
        params = [p.detach() for p in self._trainable.values()]
        if params:
            # The inf-norm propagates NaN and inf and never overflows on finite values.
            norm = torch.nn.utils.get_total_norm(params, float('inf'))
            self._params.update(~torch.isfinite(norm), step, norm)
        if is_sync_point(runner):
            self.check(runner)

    def check(self, runner) -> None:
        """Raise if a loss or the parameters were non-finite at any step so far."""
        loss, params = self._loss.read(), self._params.read()
        if params is not None and (loss is None or params[0] < loss[0]):
            # The update of that step broke the rows; its own loss was finite,
            # so the rows before it are sound.
            names = ', '.join(self._trainable)
            step = params[0]
            problem = (f'The trainable parameters ({names}) became {params[1]} in the update of '
                       f'iteration {step}, though its loss was finite')
            trusted = step - 1
        elif loss is not None:
            # The rows before that step gave the loss: resuming them (an exact
            # resume replays the same batch) would meet it again.
            step = loss[0]
            problem = f'Loss is {loss[1]} at iteration {step}'
            trusted = step - 2
        else:
            return
        raise NonFiniteLossError(stop_message(runner.work_dir, problem, trusted,
                                              row_limit=sane_row_limit(runner)))


#: How many times the longest word's norm a learned row may reach and still be
#: a place to resume from. Learned rows end at a few times it (docs/fast_concepts.md:
#: 0.69 against 0.30 for the toy star); rows far past it were blown up by the
#: steps that ended in NaN, and a lower learning rate cannot bring them back.
SANE_ROW_FACTOR = 100


def sane_row_limit(runner) -> float | None:
    """The largest row norm a checkpoint named for a resume may hold; None if unknown."""
    # Here, not at the top: mmti.engine loads without the model classes.
    from mmti.models.placeholder_embedding import PlaceholderEmbedding
    model = unwrap_model(runner.model)
    tables = [module.base.weight[:module.first_new_id] for module in model.modules()
              if isinstance(module, PlaceholderEmbedding)]
    if not tables:
        return None
    return SANE_ROW_FACTOR * max(float(t.detach().float().norm(dim=-1).max()) for t in tables)
