"""mmengine's iteration loop, resuming by seeking the sampler instead of replaying data."""
import bisect
import logging

from mmengine.logging import print_log
from mmengine.runner import IterBasedTrainLoop

from mmti.registry import LOOPS
from .hooks.non_finite import NonFiniteLossError, stop_message


class EndlessIterator:
    """``next()`` forever over a dataloader, starting a new pass when one ends.

    Each new pass tells the sampler its epoch (``set_epoch``) so a finite,
    shuffling sampler draws a new order; an infinite sampler never ends a pass.
    """

    def __init__(self, dataloader):
        self.dataloader = dataloader
        self.epoch = 0
        self._iterator = iter(dataloader)

    def __iter__(self):
        return self

    def __next__(self):
        try:
            return next(self._iterator)
        except StopIteration:
            self.epoch += 1
            sampler = getattr(self.dataloader, 'sampler', None)
            if hasattr(sampler, 'set_epoch'):
                sampler.set_epoch(self.epoch)
            self._iterator = iter(self.dataloader)
            return next(self._iterator)


@LOOPS.register_module()
class SeekingIterBasedTrainLoop(IterBasedTrainLoop):
    """On resume, tell a seekable sampler where to start.

    mmengine's ``IterBasedTrainLoop`` skips already-trained data by loading
    and transforming every batch again (minutes for thousands of 512 px
    steps). With ``SeededInfiniteSampler`` the position is just a number, and
    because every sample's randomness is keyed by its index, seeking yields
    the same data the uninterrupted run saw. Other samplers, and fresh
    starts, run mmengine's loop unchanged.
    """

    def run(self):
        # A batch sampler (ConceptBatchSampler) replaces the sampler when set.
        sampler = getattr(self.dataloader, 'batch_sampler', None)
        if not hasattr(sampler, 'seek'):
            sampler = getattr(self.dataloader, 'sampler', None)
        if not (self.iter > 0 and hasattr(sampler, 'seek')):
            return super().run()
        sampler.seek(self.iter * (self.dataloader.batch_size or 0))
        self.dataloader_iterator = EndlessIterator(self.dataloader)
        print_log(f'Resuming the data stream at step {self.iter} (sampler seek, no replay).',
                  logger='current', level=logging.INFO)
        self.runner.call_hook('before_train')
        self.runner.call_hook('before_train_epoch')
        while self.iter < self.max_iters and not self.stop_training:
            self.runner.model.train()
            self.run_iter(next(self.dataloader_iterator))
            # The validation interval in force at this iteration (val_cfg's
            # dynamic_intervals), as mmengine's loop decides it.
            self.val_interval = self.dynamic_intervals[
                bisect.bisect(self.dynamic_milestones, self.iter + 1) - 1]
            if (self.runner.val_loop is not None and self.iter >= self.val_begin
                    and (self.iter % self.val_interval == 0 or self.iter == self.max_iters)):
                self.runner.val_loop.run()
        self.runner.call_hook('after_train_epoch')
        self.runner.call_hook('after_train')
        return self.runner.model

    def run_iter(self, data_batch) -> None:
        try:
            super().run_iter(data_batch)
        except RuntimeError as err:
            # torch refuses an update step (lr / bias correction) beyond float32
            # range: the same divergence as an inf update, said the same way.
            if 'without overflow' not in str(err):
                raise
            step = self.iter + 1
            lr = self.runner.optim_wrapper.get_lr()['lr'][0]
            raise NonFiniteLossError(stop_message(
                self.runner.work_dir, f'The update of iteration {step} overflows float32 '
                f'(learning rate {lr:g})', step - 1)) from err
