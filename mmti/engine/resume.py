"""What ``--resume`` continues from, checked against the config before step 1.

mmengine resumes from the absolute path in ``last_checkpoint`` (gone once the
work dir is moved), loads rows of another ``num_vectors`` only to fail inside
the optimizer, and carries rows trained for one placeholder over to a new
one without a word. The checkpoint's ``meta.dataset_meta`` records the
placeholder (the dataset's ``metainfo``) and its state dict the rows' shapes.
"""
import os.path as osp

import torch
from mmengine.config import Config

from mmti.fileio import read_embedding_file
from mmti.utils import UserError
from .hooks.validation_sample_hook import sample_grid_path
from .learning_signal import DEFAULT_INTERVAL, DEFAULT_NUM_SAMPLES


class RunFinished(Exception):
    """``--resume`` of a run that already reached ``train_cfg.max_iters``."""

    def __init__(self, step: int, checkpoint: str,
                 hint: str = 'raise train_cfg.max_iters to train further'):
        super().__init__(f'nothing to resume: the run finished at step {step} ({checkpoint})')
        self.step, self.checkpoint, self.hint = step, checkpoint, hint


def read_last_checkpoint(work_dir: str) -> tuple[str | None, str | None]:
    """The checkpoint ``work_dir/last_checkpoint`` names, and a note if it was moved.

    When a file of the recorded (absolute) path's name lies in ``work_dir``
    but the path points elsewhere (the work dir was moved or copied), the
    file beside the marker is used.
    """
    marker = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(marker):
        return None, None
    with open(marker, 'rb') as f:
        raw = f.read()
    try:
        recorded = raw.decode('utf-8').strip()
    except UnicodeDecodeError:
        raise UserError(f'{marker} is not UTF-8 text (damaged?); delete it and pass '
                        '--resume PATH with a checkpoint of that folder.') from None
    if not recorded:
        raise UserError(f'{marker} is empty; delete it and pass --resume PATH with a '
                        'checkpoint of that folder.')
    beside = osp.join(work_dir, osp.basename(recorded))
    if osp.isfile(beside) and not (osp.isfile(recorded) and osp.samefile(recorded, beside)):
        # A moved (or copied) work dir: its own file, not one in the old place.
        state = 'is elsewhere' if osp.isfile(recorded) else 'does not exist'
        return beside, (f'last_checkpoint names {recorded}, which {state}; resuming from '
                        f'{beside} beside it (the work dir was moved or copied).')
    return recorded, None


def load_checkpoint(path: str, source: str) -> dict:
    """``torch.load(weights_only=True)`` of a resume checkpoint, or a one-line refusal."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'Checkpoint {path} (from {source}) does not exist; pass '
                                '--resume PATH with an existing checkpoint.')
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:  # truncated zip, wrong format, unsafe pickle ...
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f'Cannot resume from {path}: the file is corrupt, truncated or not an '
                         f'mmti checkpoint ({reason}). Delete it and pass --resume with an '
                         'earlier iter_*.pth.') from None
    if not (isinstance(checkpoint, dict) and 'state_dict' in checkpoint and 'meta' in checkpoint):
        raise ValueError(f'Cannot resume from {path}: it is not an mmengine checkpoint '
                         '(no state_dict/meta).')
    return checkpoint


def find_resume_checkpoint(cfg: Config) -> tuple[str | None, dict | None, str | None]:
    """``(path, checkpoint, note)`` that ``--resume`` continues; Nones if none."""
    if not cfg.get('resume'):
        return None, None, None
    if cfg.get('load_from'):
        path, note, source = cfg.load_from, None, '--resume'
    else:
        path, note = read_last_checkpoint(cfg.work_dir)
        source = f'{cfg.work_dir}/last_checkpoint'
    if path is None:
        return None, None, None  # nothing to resume from: mmengine starts afresh, as documented
    return path, load_checkpoint(path, source), note


def check_not_finished(cfg: Config, path: str, checkpoint: dict) -> str | None:
    """Raise :class:`RunFinished` if the checkpoint is at ``max_iters`` already
    or is where :class:`LearningSignalHook` stopped the run, or where
    :class:`ConceptQueueHook` finished its last concept, and the run's final
    embedding file was written from it (and its final sample grid, where the
    run draws one).

    A finished run cut off before its end wrote that file (killed after the
    last checkpoint) resumes without training, to write its outputs: the
    returned note says so. None for a run with steps left.
    """
    step = checkpoint['meta'].get('iter')
    max_iters = (cfg.get('train_cfg') or {}).get('max_iters')
    hooks = cfg.get('default_hooks') or {}
    signal = hooks.get('learning_signal')
    finished = None
    if isinstance(step, int) and isinstance(max_iters, int) and step >= max_iters:
        finished = RunFinished(step, path)
    elif ((checkpoint.get('learning_signal') or {}).get('stopped')
          and signal is not None and signal.get('stop') is not None):
        finished = RunFinished(step, path, hint=(
            'it stopped where the learning signal said the concept was learned; to train on, '
            'resume with --cfg-options default_hooks.learning_signal.stop=None'))
    else:
        queue = (checkpoint.get('concept_queue') or {}).get('queue')
        if queue and all(status == 'done' for status in queue['status']):  # every concept done
            finished = RunFinished(step, path, hint='every concept in its list is done (their files '
                                                    'are in concepts/); add concepts in a new '
                                                    '--work-dir')
    if finished is None:
        return None
    final = final_embedding_path(cfg)
    if final is None:
        raise finished  # no final file to tell a whole ending by
    missing = [] if final_written_at(final, step) else [final]
    samples = final_samples_path(cfg, step)
    if samples is not None and not osp.isfile(samples):
        missing.append(samples)
    if not missing:
        raise finished
    return (f'The run finished at step {step} ({path}) but ended before writing '
            f'{" and ".join(missing)}; writing its outputs now, without training.')


def final_samples_path(cfg: Config, step: int) -> str | None:
    """The sample grid :class:`ValidationSampleHook` draws at the end; None without one."""
    sampler = (cfg.get('default_hooks') or {}).get('validation_samples')
    if sampler is None or not (sampler.get('prompts') or
                               (cfg.get('model') or {}).get('validation_prompts')):
        return None
    return str(sample_grid_path(cfg.work_dir, step))


def final_embedding_path(cfg: Config) -> str | None:
    """Where the run's :class:`EmbeddingSaveHook` writes its final file; None without one."""
    saver = (cfg.get('default_hooks') or {}).get('embedding_save')
    if saver is None:
        return None
    return osp.join(cfg.work_dir, saver.get('filename', 'learned_embeds.safetensors'))


def final_written_at(path: str, step) -> bool:
    """Whether ``path`` is an embedding file written from training step ``step``."""
    if not osp.isfile(path):
        return False
    try:
        return read_embedding_file(path).step == step
    except Exception:  # unreadable (damaged, renamed over): it is written again
        return False


def check_signal_matches(cfg: Config, path: str, checkpoint: dict) -> None:
    """Refuse to join a saved learning-signal series measured otherwise: on
    other samples (the values would not compare) or at another interval (the
    stop would come at a step no single run reaches)."""
    hooks = cfg.get('default_hooks') or {}
    defaults = {'num_samples': DEFAULT_NUM_SAMPLES, 'interval': DEFAULT_INTERVAL}
    for name in ('learning_signal', 'concept_queue'):  # the two hooks that measure it
        saved, hook = checkpoint.get(name), hooks.get(name)
        if not saved or hook is None:
            continue
        for key, default in defaults.items():
            wanted = hook.get(key, default)
            if key in saved and saved[key] != wanted:
                raise UserError(
                    f'Cannot resume from {path}: it measured the learning signal with '
                    f'{key}={saved[key]}, this config with {wanted}, and the two series would '
                    f'not join into one; resume with --cfg-options '
                    f'default_hooks.{name}.{key}={saved[key]}.')


def check_training_data_matches(dataset, path: str, checkpoint: dict) -> None:
    """Refuse to resume on other images or captions than the checkpoint trained on.

    The steps already taken and the learning signal's series (measured on a
    fixed batch of those images) would be joined to steps on other data: the
    stop would come at a step no single run has. Moving the same files to
    another folder is fine (file contents are compared, not paths).
    """
    saved, now = checkpoint['meta'].get('dataset_meta'), getattr(dataset, 'metainfo', None)
    if not isinstance(saved, dict) or not isinstance(now, dict):
        return
    if 'concepts' in saved and 'concepts' in now:
        if list(saved['concepts']) != list(now['concepts']):
            raise UserError(
                f'Cannot resume from {path}: it trained the concepts {list(saved["concepts"])}, '
                f'the config lists {list(now["concepts"])}; resume with the same list, or train '
                'the new one into another --work-dir.')
        pairs = [(saved['concepts'][t], now['concepts'][t], f'{t}: ') for t in now['concepts']]
    else:
        pairs = [(saved, now, '')]
    for before, after, which in pairs:
        old, new = before.get('data_fingerprint'), after.get('data_fingerprint')
        if not isinstance(old, dict) or not isinstance(new, dict):
            continue  # a checkpoint from before fingerprints
        for part in ('images', 'captions'):
            if old.get(part) != new.get(part):
                raise UserError(
                    f'Cannot resume from {path}: {which}the {part} differ from those it trained '
                    f'on ({before.get("images")} images in {before.get("data_root")}, now '
                    f'{after.get("images")} in {after.get("data_root")}); the steps taken and the '
                    'learning signal would mix two data sets. Resume with the same files, or train '
                    'on the new ones into another --work-dir.')


def check_checkpoint_matches(model, cfg: Config, path: str, checkpoint: dict) -> None:
    """Refuse a checkpoint trained for another placeholder or ``num_vectors``."""
    token = (cfg.get('model') or {}).get('placeholder_token')
    dataset_meta = checkpoint['meta'].get('dataset_meta')
    saved_token = dataset_meta.get('placeholder_token') if isinstance(dataset_meta, dict) else None
    if token is not None and saved_token is not None and saved_token != token:
        raise UserError(
            f'Cannot resume from {path}: it trained placeholder {saved_token!r} but the config '
            f'has model.placeholder_token={token!r}; resume with {saved_token!r} or train '
            f'{token!r} into another --work-dir.')
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    saved = {k: tuple(v.shape) for k, v in checkpoint['state_dict'].items()
             if isinstance(v, torch.Tensor)}
    num_vectors = (cfg.get('model') or {}).get('num_vectors', 1)
    for key, shape in expected.items():
        if key not in saved:
            raise UserError(f'Cannot resume from {path}: it has no {key} (it holds '
                            f'{sorted(saved)}); it was not trained with this config\'s model.')
        if saved[key] != shape:
            if saved[key][1:] == shape[1:]:
                raise UserError(
                    f'Cannot resume from {path}: it trained num_vectors={saved[key][0]} but '
                    f'the config has model.num_vectors={num_vectors}; resume with '
                    f'num_vectors={saved[key][0]} or train into another --work-dir.')
            raise UserError(
                f'Cannot resume from {path}: {key} has shape {list(saved[key])} there but '
                f'{list(shape)} in this model (another model.pretrained_model?); resume with '
                'the config it was trained with.')
    extra = sorted(set(saved) - set(expected))
    if extra:
        raise UserError(f'Cannot resume from {path}: it holds {extra}, which this config\'s '
                        'model does not train; resume with the config it was trained with.')
