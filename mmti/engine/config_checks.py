"""Checks of a training config that mmengine leaves to fail late, or not at all.

mmengine's ``merge_from_dict`` adds any ``--cfg-options`` key, so a typo
(``train_cfg.max_iter=10``) trains with the default and exits 0. Values such
as a NaN learning rate or a crop larger than the resize fail deep inside the
run, after the work dir was created. Everything here runs before that.
"""
import difflib
import inspect
import math
import os
import os.path as osp
from collections.abc import Mapping

from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from mmti.utils import UserError

# torch DataLoader arguments plus those mmengine's Runner.build_dataloader reads.
DATALOADER_FIELDS = {
    'batch_size', 'shuffle', 'sampler', 'batch_sampler', 'num_workers', 'collate_fn',
    'pin_memory', 'drop_last', 'timeout', 'worker_init_fn', 'multiprocessing_context',
    'generator', 'prefetch_factor', 'persistent_workers', 'pin_memory_device', 'in_order',
    'dataset'}


def _registry_for(path: list[str]):
    """The registry that builds the component config at ``path`` (None: unknown)."""
    from mmti import registry
    top = path[0]
    if top == 'model':
        return registry.MODELS if len(path) == 1 else None
    if top.endswith('_dataloader'):
        if path[1:] == ['dataset']:
            return registry.DATASETS
        if path[1:] == ['sampler']:
            return registry.DATA_SAMPLERS
        if len(path) == 4 and path[1:3] == ['dataset', 'pipeline']:
            return registry.TRANSFORMS
        return None
    if top in ('default_hooks', 'custom_hooks') and len(path) == 2:
        return registry.HOOKS
    if top == 'optim_wrapper':
        return {1: registry.OPTIM_WRAPPERS, 2: registry.OPTIMIZERS}.get(len(path)) if (
            path[1:] in ([], ['optimizer'])) else None
    if top == 'param_scheduler' and len(path) <= 2:
        return registry.PARAM_SCHEDULERS
    if top == 'train_cfg' and len(path) == 1:
        return registry.LOOPS
    if top == 'visualizer' and len(path) == 1:
        return registry.VISUALIZERS
    return None


def component_fields(cls) -> set[str] | None:
    """Keyword arguments ``cls`` accepts; None when it takes ``**kwargs``."""
    from mmengine.hooks import CheckpointHook
    from mmengine.runner import Runner
    if inspect.isclass(cls) and issubclass(cls, CheckpointHook):
        # Its **kwargs go to Runner.save_checkpoint, whose arguments are known.
        own = _parameters(CheckpointHook.__init__)
        return (own - {'kwargs'}) | _parameters(Runner.save_checkpoint) | {'type'}
    init = cls.__init__ if inspect.isclass(cls) else cls
    try:
        params = inspect.signature(init).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.name != 'self'} | {'type'}


def _parameters(func) -> set[str]:
    return {name for name in inspect.signature(func).parameters if name != 'self'}


def _component_class(cfg: Config, path: list[str], node: Mapping):
    registry = _registry_for(path)
    if registry is None or not isinstance(node.get('type'), str):
        return None
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmti')):
        try:
            return registry.get(node['type'])
        except Exception:  # an unknown type is reported when it is built
            return None


def _unknown(field: str, known, what: str) -> UserError:
    close = difflib.get_close_matches(field.rsplit('.', 1)[-1], [str(k) for k in known], n=1)
    hint = f'did you mean {close[0]!r}? ' if close else ''
    return UserError(f'--cfg-options {field}: {what} has no field {field.rsplit(".", 1)[-1]!r}; '
                     f'{hint}check the spelling against the config.')


def load_user_config(path: str, options: Mapping | None = None,
                     import_custom_modules: bool = True, check_model: bool = False) -> Config:
    """The config at ``path`` with ``--cfg-options`` merged, every command's way.

    A missing, misspelt or broken file and an option that names no field of
    the config are each refused in one line that names them; with
    ``check_model`` (commands that build the model without
    :func:`check_config`), so is a ``model.pretrained_model`` that cannot load.
    """
    if osp.isdir(path):
        raise UserError(f'config {path} is a folder; give a config file such as '
                        'configs/textual_inversion_tiny.py.')
    if not osp.isfile(path):
        folder = osp.dirname(path) or '.'
        near = difflib.get_close_matches(
            osp.basename(path), os.listdir(folder) if osp.isdir(folder) else [], n=1)
        hint = f'did you mean {osp.join(osp.dirname(path), near[0])}?' if near else (
            'give the path of a config such as configs/textual_inversion_tiny.py.')
        raise UserError(f'config {path} does not exist; {hint}')
    try:
        cfg = Config.fromfile(path, import_custom_modules=import_custom_modules)
    except SyntaxError as err:
        raise UserError(f'config {path} line {err.lineno}: syntax error: {err.msg}.') from None
    except UnicodeDecodeError:
        raise UserError(f'config {path} is not UTF-8 text; re-save it as UTF-8.') from None
    except (NameError, ImportError, AttributeError, KeyError, ValueError, TypeError) as err:
        raise UserError(f'config {path} cannot be loaded: {type(err).__name__}: '
                        f'{str(err).splitlines()[0] if str(err) else ""}') from None
    if options:
        check_cfg_options(cfg, options)
        cfg.merge_from_dict(options)
    if check_model:
        check_pretrained_model((cfg.get('model') or {}).get('pretrained_model'))
    return cfg


#: Top-level keys something reads after the file is loaded: mmengine's Runner
#: and mmti's own (the evaluation block).
READ_TOP_LEVEL = frozenset(
    {*inspect.signature(Runner.__init__).parameters, 'evaluation', 'custom_imports',
     'model_wrapper_cfg', 'env_variables'})


def _refuse_file_variable(cfg: Config, key: str) -> None:
    """A top-level name no component reads, whose value the file copied into
    fields (``concepts = 'data/...'``, then ``model = dict(concepts=concepts)``):
    an option on it would change nothing."""
    if '.' in key or key in READ_TOP_LEVEL or key not in cfg:
        return
    value = cfg[key]
    if not isinstance(value, str | list | tuple | Mapping) or not value:
        return
    used = [path for name in cfg if name != key and name not in ('_base_',)
            for path in _paths_holding(cfg[name], value, name)]
    if used:
        raise UserError(f'--cfg-options {key}: {key} is a variable the config file uses as it is '
                        f'read (its value is in {", ".join(used[:4])}); an option on it changes '
                        f'nothing. Set {" and ".join(used[:4])} instead.')


def _paths_holding(node, value, path: str) -> list[str]:
    if node is value or (type(node) is type(value) and node == value):
        return [path]
    if isinstance(node, Mapping):
        return [p for k, v in node.items() for p in _paths_holding(v, value, f'{path}.{k}')]
    if isinstance(node, list | tuple):
        return [p for i, v in enumerate(node) for p in _paths_holding(v, value, f'{path}.{i}')]
    return []


def check_cfg_options(cfg: Config, options: Mapping) -> None:
    """Refuse ``--cfg-options`` keys that name no field of the config.

    A key may add a leaf the config omits only where the receiving class
    accepts it (a model or dataset argument left at its default); unknown
    top-level names, fields no component accepts and list indices out of
    range are refused with the key named.
    """
    for key in options:
        _refuse_file_variable(cfg, key)
        parts = key.split('.')
        node = cfg._cfg_dict if isinstance(cfg, Config) else cfg
        for depth, part in enumerate(parts):
            here = '.'.join(parts[:depth + 1])
            if isinstance(node, list | tuple):
                if not part.isdigit() or int(part) >= len(node):
                    raise UserError(f'--cfg-options {key}: {".".join(parts[:depth]) } is a list '
                                    f'of {len(node)}; {part!r} is not an index of it.')
                node = node[int(part)]
                continue
            if not isinstance(node, Mapping):
                break  # the option replaces a plain value by a dict: mmengine's rule
            if part in node:
                node = node[part]
                continue
            if depth == 0:
                raise _unknown(here, list(node), 'the config')
            parent = parts[:depth]
            if parent == ['default_hooks'] and depth + 1 < len(parts):
                # A field of a hook the config does not have: a misspelt hook name.
                raise _unknown(here, list(node), 'default_hooks (hooks by name)')
            if parent[0].endswith('_dataloader') and len(parent) == 1:
                if part not in DATALOADER_FIELDS:
                    raise _unknown(here, DATALOADER_FIELDS, parent[0])
                break
            cls = _component_class(cfg, parent, node)
            if cls is not None:
                fields = component_fields(cls)
                if fields is not None and part not in fields:
                    raise _unknown(here, fields, f'{".".join(parent)} ({cls.__name__})')
            break  # a new leaf (or branch) where the receiver accepts it


def fill_placeholder_token(cfg: Config) -> None:
    """Declare the placeholder once: the dataset takes ``model.placeholder_token``.

    Raises:
        UserError: if the dataset names a different token (its captions
            would not contain the one being trained).
    """
    model = cfg.get('model') or {}
    token = model.get('placeholder_token')
    dataset = (cfg.get('train_dataloader') or {}).get('dataset')
    if token is None or not isinstance(dataset, Mapping):
        return
    if dataset.get('type') not in ('TextualInversionDataset', 'mmti.TextualInversionDataset'):
        return
    own = dataset.get('placeholder_token')
    if own is None:
        dataset['placeholder_token'] = token
    elif own != token:
        raise UserError(
            f'model.placeholder_token={token!r} but train_dataloader.dataset.placeholder_token='
            f'{own!r}; the captions would not contain the trained token. Set it once at the top '
            'of the config (placeholder_token = ...) and drop the dataset\'s copy.')


def check_validation_prompts(cfg: Config) -> None:
    """Refuse validation prompts that all miss the trained placeholder.

    Changing ``model.placeholder_token`` alone leaves prompts like
    "a <cat-toy>" that render without the new concept: samples that look
    like a failed run.
    """
    model = cfg.get('model') or {}
    token, prompts = model.get('placeholder_token'), model.get('validation_prompts')
    if not isinstance(token, str) or not prompts or isinstance(prompts, str):
        return
    if not any(isinstance(p, str) and (token in p or '{}' in p) for p in prompts):
        raise UserError(
            f'model.validation_prompts never mention model.placeholder_token={token!r} (first: '
            f'{prompts[0]!r}); the samples would not show the concept. Write them with {{}} '
            "where the token goes ('a {} bag'), as the shipped configs do.")


def _number(value, field: str, kind=float):
    if isinstance(value, bool) or not isinstance(value, int | float) or (
            kind is int and not isinstance(value, int)):
        raise UserError(f'{field} must be {"an integer" if kind is int else "a number"}, '
                        f'got {value!r}.')
    if not math.isfinite(value):
        raise UserError(f'{field} must be a finite number, got {value!r}.')
    return value


def _check_sizes(cfg: Config) -> None:
    dataset = (cfg.get('train_dataloader') or {}).get('dataset') or {}
    resize = None
    for step in dataset.get('pipeline') or []:
        if not isinstance(step, Mapping):
            continue
        if step.get('type') == 'ResizeShorterSide':
            resize = step.get('size')
        elif step.get('type') in ('CenterCrop', 'RandomCrop') and resize is not None:
            crop = step.get('size')
            crop_side = max(crop) if isinstance(crop, list | tuple) else crop
            if isinstance(crop_side, int) and isinstance(resize, int) and crop_side > resize:
                raise UserError(
                    f'train_dataloader.dataset.pipeline: {step["type"]} size {crop} is larger '
                    f'than ResizeShorterSide size {resize}; the crop would leave the image. '
                    'Make the crop at most the resize.')


def check_pretrained_model(path, field: str = 'model.pretrained_model') -> None:
    """Refuse a missing local folder, or a hub id that cannot load offline;
    ``field`` is what the user set it as."""
    if not isinstance(path, str):
        return
    expanded = osp.expanduser(path)
    if osp.isdir(expanded):
        return
    # A hub id is "org/name": exactly one slash, no leading dot, slash or tilde.
    looks_local = (path.startswith(('.', '/', '~')) or path.count('/') > 1
                   or (os.sep != '/' and os.sep in path))
    if looks_local:
        raise UserError(f'{field} {path} is not a folder (looked in '
                        f'{osp.abspath(expanded)}); give a diffusers model folder or a hub id '
                        'such as stable-diffusion-v1-5/stable-diffusion-v1-5.')
    offline = os.environ.get('HF_HUB_OFFLINE', '').lower() not in ('', '0', 'false', 'no')
    if _in_hub_cache(path):
        return
    if offline:
        raise UserError(f'{field} {path} is neither a local folder (looked in '
                        f'{osp.abspath(expanded)}) nor in the Hugging Face cache, and '
                        'HF_HUB_OFFLINE is set; download it first or give the folder path.')
    endpoint = _unreachable_hub()
    if endpoint:
        # Without this, huggingface_hub retries for minutes before failing.
        raise UserError(
            f'{field} {path} is not downloaded and the hub ({endpoint}) cannot '
            f'be reached; download it once where there is network (hf download '
            f'{path} --local-dir models/{path.rsplit("/", 1)[-1]}) and set '
            f'{field} to that folder.')


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache
    try:
        return isinstance(try_to_load_from_cache(repo_id, 'model_index.json'), str)
    except Exception:  # not a valid repo id either
        return False


def _unreachable_hub(timeout: float = 5.0) -> str | None:
    """The hub endpoint if a TCP connection to it fails within ``timeout`` seconds."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants
    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == 'https' else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError:
        return constants.ENDPOINT
    return None


def check_initial_embedding(path) -> None:
    """A corrupt ``model.initial_embedding`` is named, not a reader's traceback."""
    if not isinstance(path, str) or not osp.exists(path):
        return  # missing: the model names it
    from mmti.fileio import read_embedding_file
    try:
        read_embedding_file(path)
    except (UserError, ValueError) as err:
        raise UserError(f'model.initial_embedding: {err}') from None
    except Exception as err:  # safetensors/pickle/zip errors of a damaged file
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f'model.initial_embedding {path} cannot be read: the file is corrupt, '
                        f'truncated or not an embedding file ({reason}).') from None


def _components(cfg: Config):
    """``(field, config)`` of the components the Runner builds after creating the work dir."""
    for name, hook in (cfg.get('default_hooks') or {}).items():
        yield f'default_hooks.{name}', ['default_hooks', name], hook
    for i, hook in enumerate(cfg.get('custom_hooks') or []):
        yield f'custom_hooks.{i}', ['custom_hooks', str(i)], hook
    wrapper = cfg.get('optim_wrapper') or {}
    yield 'optim_wrapper', ['optim_wrapper'], wrapper
    yield 'optim_wrapper.optimizer', ['optim_wrapper', 'optimizer'], wrapper.get('optimizer')
    schedulers = cfg.get('param_scheduler')
    for i, scheduler in enumerate(schedulers if isinstance(schedulers, list) else [schedulers]):
        yield 'param_scheduler', ['param_scheduler', str(i)], scheduler
    yield 'train_cfg', ['train_cfg'], cfg.get('train_cfg')
    loader = cfg.get('train_dataloader') or {}
    yield 'train_dataloader.sampler', ['train_dataloader', 'sampler'], loader.get('sampler')


def check_component_types(cfg: Config) -> None:
    """Unknown ``type`` names of hooks, optimizer, scheduler, loop and sampler.

    mmengine builds these only after it created the work dir and its log
    folder; a typo would leave both behind with a registry traceback.
    """
    for field, path, node in _components(cfg):
        if not isinstance(node, Mapping) or not isinstance(node.get('type'), str):
            continue
        registry = _registry_for(path)
        if registry is None:
            continue
        with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmti')):
            try:
                found = registry.get(node['type'])
            except Exception:  # e.g. a dotted name whose module does not import
                found = None
        if found is None:
            known = sorted({k for r in (registry, registry.parent) if r is not None
                            for k in r.module_dict})
            by_lower = {k.lower(): k for k in known}
            close = [by_lower[k] for k in difflib.get_close_matches(
                node['type'].lower(), list(by_lower), n=1)]
            hint = f'did you mean {close[0]!r}?' if close else f'known: {", ".join(known[:8])}, ...'
            raise UserError(f'{field}.type={node["type"]!r} is not a registered {registry.name}; '
                            f'{hint}')
        if field == 'optim_wrapper.optimizer':
            _check_optimizer_fields(node, found)


def _check_optimizer_fields(node: Mapping, cls) -> None:
    # --cfg-options optim_wrapper.optimizer.type=SGD keeps the base config's
    # AdamW settings (betas, weight_decay...), which SGD refuses only at build.
    fields = component_fields(cls)
    extra = sorted(set(node) - fields - {'_delete_'}) if fields is not None else []
    if extra:
        raise UserError(
            f'optim_wrapper.optimizer ({node["type"]}) takes no {", ".join(extra)} (kept from '
            'the config the type was changed in?). Replace the whole optimizer in a config file '
            f"that inherits this one: optim_wrapper = dict(optimizer=dict(_delete_=True, "
            f"type='{node['type']}', lr=...)).")


def check_config(cfg: Config) -> None:
    """Values that would fail late or train nothing, named by their field."""
    check_component_types(cfg)
    train_cfg = cfg.get('train_cfg') or {}
    if 'max_iters' in train_cfg:
        if _number(train_cfg.max_iters, 'train_cfg.max_iters', int) <= 0:
            raise UserError(f'train_cfg.max_iters must be >= 1, got {train_cfg.max_iters}.')
    loader = cfg.get('train_dataloader') or {}
    if loader.get('batch_size') is not None:
        if _number(loader.batch_size, 'train_dataloader.batch_size', int) < 1:
            raise UserError(f'train_dataloader.batch_size must be >= 1, got {loader.batch_size}.')
    optimizer = (cfg.get('optim_wrapper') or {}).get('optimizer') or {}
    if 'lr' in optimizer and _number(optimizer.lr, 'optim_wrapper.optimizer.lr') < 0:
        raise UserError(f'optim_wrapper.optimizer.lr must be >= 0, got {optimizer.lr}.')
    model = cfg.get('model') or {}
    check_validation_prompts(cfg)
    if 'num_vectors' in model:
        _number(model.num_vectors, 'model.num_vectors', int)
    if 'pretrained_model' in model:
        check_pretrained_model(model.pretrained_model)
    if model.get('initial_embedding') is not None:
        check_initial_embedding(model.initial_embedding)
    _check_sizes(cfg)
    _check_concept_queue(cfg)
    _check_signal_hooks(cfg)


def _check_signal_hooks(cfg: Config) -> None:
    """The learning-signal hooks' settings (the stop rule's window, interval...),
    which mmengine would check only after it created the work dir."""
    from mmti.engine.hooks import ConceptQueueHook, LearningSignalHook
    for _, path, node in _components(cfg):
        cls = _component_class(cfg, path, node) if isinstance(node, Mapping) else None
        if not (isinstance(cls, type) and issubclass(cls, (LearningSignalHook, ConceptQueueHook))):
            continue
        try:
            cls(**{k: v for k, v in node.items() if k not in ('type', 'priority')})
        except (TypeError, ValueError) as err:
            raise UserError(str(err)) from None


def _check_concept_queue(cfg: Config) -> None:
    """A many-concept run reads its queue at every step: no batches fetched ahead."""
    loader = cfg.get('train_dataloader') or {}
    batch_sampler = loader.get('batch_sampler') or {}
    if not str(batch_sampler.get('type', '')).endswith('ConceptBatchSampler'):
        return
    if loader.get('num_workers', 0):
        raise UserError(
            f'train_dataloader.num_workers={loader.num_workers} with ConceptBatchSampler: workers '
            'fetch batches ahead, before the queue knows which concepts have stopped; set '
            'train_dataloader.num_workers=0 (the images are decoded once and kept in memory).')
    hooks = cfg.get('default_hooks') or {}
    if not any(isinstance(h, Mapping) and str(h.get('type', '')).endswith('ConceptQueueHook')
               for h in [*hooks.values(), *(cfg.get('custom_hooks') or [])]):
        raise UserError('ConceptBatchSampler needs default_hooks.concept_queue='
                        "dict(type='ConceptQueueHook', ...): it advances and stops the concepts.")
