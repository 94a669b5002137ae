"""Write the learned rows in diffusers' format while training runs."""
from pathlib import Path

from mmti.registry import HOOKS
from .non_finite import NonFiniteLossError, all_finite, stop_message
from .periodic_hook import PeriodicHook


@HOOKS.register_module()
class EmbeddingSaveHook(PeriodicHook):
    """Save ``learned_embeds-steps-N.safetensors`` every ``interval`` steps and
    ``learned_embeds.safetensors`` when training ends, in the work dir.

    They hold every trained concept but those a hook reports in its
    ``not_learned_tokens`` (:class:`ConceptQueueHook`). These files are the product (a few KB
    each): they load into :meth:`TextualInversion.load_embeddings` and, with
    one concept, into diffusers' ``load_textual_inversion`` (a many-concept
    run also writes one file per concept, ``concepts/<name>/``).
    Only rank 0 writes; every write is atomic; rows that are not finite are
    never written (:class:`NonFiniteLossError`).

    Args:
        interval: Steps between snapshots; 0 or less saves only the final file.
        filename: Name of the final file.
    """

    def __init__(self, interval: int = 500, filename: str = 'learned_embeds.safetensors'):
        super().__init__(interval)
        self.filename = filename

    def act(self, runner, model, step: int, final: bool) -> None:
        name = self.filename if final else f'{Path(self.filename).stem}-steps-{step}.safetensors'
        # Every trained concept, but those a hook found not learning.
        left_out = {t for hook in runner.hooks for t in getattr(hook, 'not_learned_tokens', ())}
        tokens = [t for t in model.placeholder_tokens if t not in left_out]
        if not tokens:
            return
        rows = model.get_embeddings(tokens)
        if not all_finite(list(rows.values())):  # NonFiniteLossHook missing from custom_hooks?
            raise NonFiniteLossError(stop_message(
                runner.work_dir, f'Not saving {name}: the learned rows of iteration {step} hold '
                'NaN or inf', step - 1))
        path = model.save_embeddings(str(Path(runner.work_dir) / name), tokens=tokens, step=step)
        runner.logger.info(f'Saved learned embedding to {path}')
