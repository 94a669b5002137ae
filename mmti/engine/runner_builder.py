"""Build mmengine's Runner after checking the config, so bad input fails early.

mmengine creates the work dir, log files and a config dump before it builds
the model or touches the data; a typo in the concept folder would then leave
those behind. Here the config values, the resume checkpoint, the model and a
throwaway copy of the dataset (whose captions the model checks) are checked
first, and the work dir for writability without creating it.
"""
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from torch import cuda

from mmti.registry import DATASETS, MODELS
from mmti.utils import UserError

from .config_checks import check_config, fill_placeholder_token
from .console import QuietConsoleRunner, warnings_only
from .resume import (check_checkpoint_matches, check_not_finished, check_signal_matches,
                     check_training_data_matches, find_resume_checkpoint, read_last_checkpoint)


def check_work_dir(work_dir: str) -> None:
    """Fail with a clear message if ``work_dir`` cannot be created or written."""
    path = Path(work_dir).resolve()
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(f'Work dir {work_dir}: {existing} is a file, not a folder; '
                                 'pass another --work-dir.')
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f'Work dir {work_dir} is not writable ({existing} denies it); '
                              'pass --work-dir with a folder you can write to.')
    # Permissions do not tell everything (root on a read-only or virtual file
    # system such as /proc): make and remove a folder where the run's would go.
    try:
        os.rmdir(tempfile.mkdtemp(prefix='.mmti-probe-', dir=existing))
    except OSError as err:
        raise PermissionError(f'Work dir {work_dir} cannot be created in {existing} '
                              f'({err.strerror}); pass --work-dir with a folder you can write '
                              'to.') from None


def _unknown_field(err: TypeError, field: str) -> UserError | TypeError:
    """mmengine's "unexpected keyword argument 'x'" as a message naming the config field."""
    match = re.search(r"unexpected keyword argument '(\w+)'", str(err))
    if not match:
        return err
    # "TextualInversion.__init__() got ..." (mmengine may prefix "class `X` in m: ")
    owner = re.search(r'(\w+)\.__init__\(\)', str(err)) or re.match(r'class `(\w+)`', str(err))
    cls = f' ({owner.group(1)})' if owner else ''
    return UserError(f'{field}.{match.group(1)} is not a field of {field}{cls}; remove it or '
                     'check its spelling.')


def _build(registry, cfg_node, field: str):
    try:
        return registry.build(cfg_node)
    except TypeError as err:
        raise _unknown_field(err, field) from None
    except UnicodeDecodeError as err:
        fix = _non_utf8_file(cfg_node) or 'check its templates and caption files'
        raise UserError(f'{field}: a text file it reads is not UTF-8 ({err.reason} at byte '
                        f'{err.start}); {fix}.') from None


def _non_utf8_file(dataset_cfg) -> str | None:
    """Name the template or caption file that is not UTF-8 (the decoder does not)."""
    candidates = []
    templates = dataset_cfg.get('templates') if hasattr(dataset_cfg, 'get') else None
    if isinstance(templates, str):
        candidates.append(Path(templates))
    root = dataset_cfg.get('data_root') if hasattr(dataset_cfg, 'get') else None
    if isinstance(root, str) and os.path.isdir(root):
        candidates += sorted(Path(root).glob('*.txt'))
    for path in candidates:
        try:
            path.read_bytes().decode('utf-8')
        except UnicodeDecodeError:
            return f're-save {path} as UTF-8'
        except OSError:
            continue
    return None


def build_runner(cfg: Config, claim_work_dir: Callable[[], None] | None = None) -> Runner:
    """``Runner.from_cfg`` after the config, model, data and resume file are checked.

    Args:
        cfg: The training config.
        claim_work_dir: Called after every check passed and before the
            Runner creates anything in the work dir (tools/train.py locks it).

    Raises:
        RunFinished: ``--resume`` of a run that already reached max_iters.
    """
    fill_placeholder_token(cfg)
    check_config(cfg)
    check_work_dir(cfg.work_dir)
    resume_from, checkpoint, note = find_resume_checkpoint(cfg)
    finishing = check_not_finished(cfg, resume_from, checkpoint) if checkpoint is not None else None
    # The Runner builds both again and logs the same INFO lines: shown once.
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmti')), warnings_only():
        dataset = _build(DATASETS, cfg.train_dataloader.dataset, 'train_dataloader.dataset')
        model = _build(MODELS, cfg.model, 'model')
    if hasattr(dataset, 'distinct_captions') and hasattr(model, 'check_training_captions'):
        model.check_training_captions(dataset.distinct_captions(), 'train_dataloader.dataset')
    if checkpoint is not None:
        check_training_data_matches(dataset, resume_from, checkpoint)
        check_checkpoint_matches(model, cfg, resume_from, checkpoint)
        check_signal_matches(cfg, resume_from, checkpoint)
        cfg.load_from = resume_from  # the checked (maybe relocated) file, not mmengine's pick
    # The checked model is dropped and built again by mmengine's own
    # Runner.from_cfg: the price of a second load of the weights (seconds)
    # buys mmengine's construction as is, nothing of it copied here.
    del dataset, checkpoint, model
    drop_removed_hooks(cfg)
    if claim_work_dir is not None:
        claim_work_dir()
    if cfg.get('resume') and resume_from is None and read_last_checkpoint(cfg.work_dir)[0] is None:
        # --resume with nothing to resume is a fresh run: said as one, not with
        # mmengine's "Did not find last_checkpoint" / "Auto resumed from ... None".
        cfg.resume = False
    if not cuda.is_available():
        # Without CUDA the process group (if any) is gloo; say so in the
        # logged environment and config instead of the GPU default, nccl.
        cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
    runner = QuietConsoleRunner.from_cfg(plain_text_config(cfg))
    for line in (note, finishing):
        if line:
            runner.logger.warning(line)
    return runner


def plain_text_config(cfg: Config) -> Config:
    """The same config, written out without yapf's reformatting.

    The Runner turns its config into text five times before the first step
    (log, dump, visualizer, message hub) and again at every checkpoint.
    mmengine's own layout of that text is already one key per line; yapf's
    pass over it adds only line breaks, and its cost grows with the config:
    most of a second per pass once a config lists a few concepts (see
    docs/many_concepts_benchmark.md). ``Config.fromfile`` takes
    ``format_python_code``, but mmengine 0.10 drops it for plain configs.
    """
    return Config(cfg.to_dict(), cfg_text=cfg.text, filename=cfg.filename,
                  env_variables=cfg.env_variables, format_python_code=False)


def drop_removed_hooks(cfg: Config) -> None:
    """``default_hooks.<name>=None`` removes the hook, for mmti's hooks too.

    mmengine accepts None only for its own six default hooks; mmti adds its
    hooks to ``default_hooks`` by name (so they can be addressed by name), and
    a user switching one off expects the same spelling to work.
    """
    hooks = cfg.get('default_hooks') or {}
    for name in [n for n, hook in hooks.items() if hook is None and n not in MMENGINE_DEFAULT_HOOKS]:
        del hooks[name]


# Runner.register_default_hooks' own names (mmengine 0.10).
MMENGINE_DEFAULT_HOOKS = ('runtime_info', 'timer', 'sampler_seed', 'logger', 'param_scheduler',
                          'checkpoint')
