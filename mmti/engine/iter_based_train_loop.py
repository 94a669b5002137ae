"""mmengine's iteration loop, resuming by seeking instead of replaying data."""
import logging

from mmengine.logging import print_log
from mmengine.runner import IterBasedTrainLoop as MMEngineIterBasedTrainLoop
from mmengine.runner.loops import _InfiniteDataloaderIterator

from mmti.registry import LOOPS


@LOOPS.register_module()
class IterBasedTrainLoop(MMEngineIterBasedTrainLoop):
    """On resume, tell a seekable sampler where to start.

    mmengine skips already-trained data by loading and transforming every
    batch again (minutes for thousands of 512 px steps). With
    ``SeededInfiniteSampler`` the position is just a number, and because every
    sample's randomness is keyed by its index, seeking yields the same data
    the uninterrupted run saw. Other samplers fall back to mmengine's replay.
    """

    def run(self):
        sampler = getattr(self.dataloader, 'sampler', None)
        if not (self._iter > 0 and hasattr(sampler, 'seek')):
            return super().run()
        sampler.seek(self._iter * self.dataloader.batch_size)
        self.dataloader_iterator = _InfiniteDataloaderIterator(self.dataloader)
        print_log(f'Resuming the data stream at step {self._iter} (sampler seek, no replay).',
                  logger='current', level=logging.INFO)
        self.runner.call_hook('before_train')
        self.runner.call_hook('before_train_epoch')
        while self._iter < self._max_iters and not self.stop_training:
            self.runner.model.train()
            self.run_iter(next(self.dataloader_iterator))
            self._decide_current_val_interval()
            if (self.runner.val_loop is not None and self._iter >= self.val_begin
                    and (self._iter % self.val_interval == 0 or self._iter == self._max_iters)):
                self.runner.val_loop.run()
        self.runner.call_hook('after_train_epoch')
        self.runner.call_hook('after_train')
        return self.runner.model
