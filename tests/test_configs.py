"""Every config (configs/ and projects/*/configs/) loads, names only registered
types, and builds its model and dataset (on the tiny models where it names a hub id)."""
import importlib

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmti_testing import REPO_ROOT, TINY_SD

from mmti.engine import fill_placeholder_token
from mmti.registry import (DATA_SAMPLERS, DATASETS, HOOKS, LOOPS, MODELS,
                           OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS, OPTIMIZERS,
                           PARAM_SCHEDULERS, TRANSFORMS, VISBACKENDS, VISUALIZERS)

CONFIG_DIR = REPO_ROOT / 'configs'
CONFIGS = sorted(CONFIG_DIR.glob('*.py'))
PROJECT_CONFIGS = sorted(REPO_ROOT.glob('projects/*/configs/*.py'))


def load(path) -> Config:
    return Config.fromfile(str(path))


def pipeline_sizes(dataset) -> dict[str, int]:
    """Sizes of the built dataset's transforms, by transform name."""
    return {type(t).__name__: t.size for t in dataset.pipeline.transforms if hasattr(t, 'size')}


def build_dataset(cfg: Config):
    fill_placeholder_token(cfg)
    with DefaultScope.overwrite_default_scope('mmti'):
        return DATASETS.build(cfg.train_dataloader.dataset)


def test_configs_are_found():
    assert {'textual_inversion.py', 'textual_inversion_tiny.py',
            'textual_inversion_style.py'} <= {p.name for p in CONFIGS}


# Many-concept configs (model.concepts) have their own checks below.
MANY_CONCEPT_CONFIGS = [p for p in CONFIGS if load(p).model.get('concepts') is not None]
SINGLE_CONCEPT_CONFIGS = [p for p in CONFIGS if p not in MANY_CONCEPT_CONFIGS]


@pytest.fixture(params=CONFIGS, ids=lambda p: p.stem)
def cfg(request, monkeypatch) -> Config:
    monkeypatch.chdir(REPO_ROOT)  # data_root is relative to the repository
    return load(request.param)


@pytest.fixture(params=SINGLE_CONCEPT_CONFIGS, ids=lambda p: p.stem)
def single_cfg(request, monkeypatch) -> Config:
    monkeypatch.chdir(REPO_ROOT)
    return load(request.param)


@pytest.fixture(params=MANY_CONCEPT_CONFIGS, ids=lambda p: p.stem)
def many_cfg(request, monkeypatch) -> Config:
    monkeypatch.chdir(REPO_ROOT)
    return load(request.param)


def test_config_names_registered_types(cfg):
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        assert cfg.default_scope == 'mmti'
        for hook in [*cfg.default_hooks.values(), *cfg.custom_hooks]:
            assert hook is None or HOOKS.get(hook['type']) is not None, hook  # None: removed
        assert LOOPS.get(cfg.train_cfg.type).__module__.startswith('mmti.')
        assert MODELS.get(cfg.model.type) is not None
        assert DATASETS.get(cfg.train_dataloader.dataset.type) is not None
        assert DATA_SAMPLERS.get(cfg.train_dataloader.sampler.type) is not None
        if 'batch_sampler' in cfg.train_dataloader:
            assert DATA_SAMPLERS.get(cfg.train_dataloader.batch_sampler.type) is not None
        for transform in cfg.train_dataloader.dataset.get('pipeline', ()):
            assert TRANSFORMS.get(transform['type']) is not None, transform
        assert OPTIM_WRAPPERS.get(cfg.optim_wrapper.type) is not None
        assert OPTIM_WRAPPER_CONSTRUCTORS.get(cfg.optim_wrapper.constructor) is not None
        assert OPTIMIZERS.get(cfg.optim_wrapper.optimizer.type) is not None
        schedulers = cfg.param_scheduler if isinstance(cfg.param_scheduler, list) else [
            cfg.param_scheduler]
        for scheduler in schedulers:
            assert PARAM_SCHEDULERS.get(scheduler['type']) is not None
        assert VISUALIZERS.get(cfg.visualizer.type) is not None
        for backend in cfg.visualizer.vis_backends:
            assert VISBACKENDS.get(backend['type']) is not None


def test_many_concept_configs_are_found():
    assert 'textual_inversion_toy_concepts.py' in {p.name for p in MANY_CONCEPT_CONFIGS}


def test_many_concept_configs_declare_their_concepts_once(many_cfg):
    cfg = many_cfg
    # The model and the dataset read the same list (or folder).
    assert cfg.model.concepts == cfg.train_dataloader.dataset.concepts
    assert 'placeholder_token' not in cfg.model
    assert cfg.default_hooks.concept_queue.type == 'ConceptQueueHook'
    assert cfg.default_hooks.get('learning_signal') is None  # the queue measures per concept
    assert cfg.model_wrapper_cfg.find_unused_parameters  # DDP: absent concepts get no gradient
    assert cfg.train_dataloader.get('num_workers', 0) == 0  # the queue is read every step
    # Hub ids and a user's own concept folder are not here: the tiny model and the toy concepts.
    if not (REPO_ROOT / cfg.model.pretrained_model).is_dir():
        cfg.model.pretrained_model = str(TINY_SD)
    if isinstance(cfg.model.concepts, str) and not (REPO_ROOT / cfg.model.concepts).is_dir():
        cfg.model.concepts = cfg.train_dataloader.dataset.concepts = 'data/toy_concepts'
    model = MODELS.build(cfg.model)
    with DefaultScope.overwrite_default_scope('mmti'):
        dataset = DATASETS.build(cfg.train_dataloader.dataset)
    assert model.placeholder_tokens == dataset.tokens and len(dataset.tokens) >= 2
    for concept, token in enumerate(dataset.tokens):
        sample = dataset[concept, 0]
        assert token in sample['captions'] and sample['concepts'] == token
        assert model.token_embedding.concept_rows(token).requires_grad


def test_config_is_consistent(single_cfg):
    cfg = single_cfg
    placeholder = cfg.model.placeholder_token
    # Declared once: the dataset takes model.placeholder_token (build_runner fills it).
    assert 'placeholder_token' not in cfg.train_dataloader.dataset
    fill_placeholder_token(cfg)
    assert cfg.train_dataloader.dataset.placeholder_token == placeholder
    assert cfg.model.validation_prompts
    # Written with {} for the token, so they follow model.placeholder_token.
    assert all('{}' in prompt for prompt in cfg.model.validation_prompts)
    # No weight decay: it would pull the learned rows towards zero.
    assert cfg.optim_wrapper.optimizer.weight_decay == 0.0
    # mmti's hooks are addressed by name, not by list position.
    assert {'non_finite', 'embedding_save', 'validation_samples'} <= set(cfg.default_hooks)
    assert cfg.custom_hooks == []


def test_model_and_dataset_build_on_the_tiny_components(single_cfg):
    cfg = single_cfg
    placeholder = cfg.model.placeholder_token
    # The bundled tiny folder of the same family; the config's dtype is kept.
    family = ('tiny-sdxl' if cfg.model.type == 'TextualInversionXL'
              else 'tiny-sd2' if 'stable-diffusion-2' in cfg.model.pretrained_model else 'tiny-sd')
    cfg.model.pretrained_model = str(TINY_SD.parent / family)
    fill_placeholder_token(cfg)
    with DefaultScope.overwrite_default_scope('mmti'):
        model = MODELS.build(cfg.model)
        dataset = DATASETS.build(cfg.train_dataloader.dataset)
    assert model.concepts == [placeholder]
    assert placeholder in model.tokenizer.get_vocab()
    placeholder_id = model.tokenizer.convert_tokens_to_ids(placeholder)
    assert placeholder_id == model.token_embedding.first_new_id
    assert model.validation_prompts[0] == cfg.model.validation_prompts[0].replace('{}', placeholder)
    assert model.tokenize([model.validation_prompts[0]])[0].tolist().count(placeholder_id) == 1
    # The rows start as the initializer word's embedding.
    (init_id,) = model.tokenizer.encode(cfg.model.initializer_token, add_special_tokens=False)
    rows = model.token_embedding.concept_rows(placeholder)
    assert rows.shape[0] == cfg.model.get('num_vectors', 1) and rows.requires_grad
    assert torch.equal(rows[0], model.token_embedding.base.weight[init_id].float())
    dtype = {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16}[cfg.model.dtype]
    assert model.unet.dtype == dtype and model.text_encoder.dtype == dtype
    assert rows.dtype == torch.float32  # the learned rows stay fp32

    sizes = pipeline_sizes(dataset)
    size = cfg.train_dataloader.dataset.resolution  # set once; the pipeline follows it
    assert sizes == {'ResizeShorterSide': size, 'CenterCrop': size}
    sample = dataset[0]
    assert sample['inputs'].shape == (3, size, size)
    assert placeholder in sample['captions']


def test_full_config_is_the_papers_recipe():
    cfg = load(CONFIG_DIR / 'textual_inversion.py')
    assert cfg.model.pretrained_model == 'stable-diffusion-v1-5/stable-diffusion-v1-5'
    assert cfg.model.placeholder_token == '<cat-toy>'
    assert cfg.model.initializer_token == 'toy'
    assert cfg.model.num_vectors == 1
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    assert cfg.optim_wrapper.optimizer.lr == 5e-4
    assert cfg.train_dataloader.batch_size == 1
    assert cfg.train_cfg.max_iters == 3000
    assert cfg.train_dataloader.dataset.resolution == 512
    assert cfg.train_dataloader.dataset.data_root == 'data/cat_toy'
    assert cfg.train_dataloader.dataset.learnable_property == 'object'


def test_tiny_config_points_at_the_bundled_model_and_64px():
    cfg = load(CONFIG_DIR / 'textual_inversion_tiny.py')
    assert cfg.model.pretrained_model == 'data/tiny-sd'
    assert (REPO_ROOT / cfg.model.pretrained_model).resolve() == TINY_SD.resolve()
    assert cfg.train_dataloader.dataset.resolution == 64
    assert cfg.default_hooks.embedding_save.interval == 100
    assert cfg.model.dtype == 'fp32'
    assert cfg.train_dataloader.num_workers == 0
    # Everything else is inherited from the full recipe.
    assert cfg.model.placeholder_token == '<cat-toy>' and cfg.optim_wrapper.optimizer.lr == 5e-4


def test_style_config_learns_a_style():
    cfg = load(CONFIG_DIR / 'textual_inversion_style.py')
    assert cfg.train_dataloader.dataset.learnable_property == 'style'
    assert cfg.model.placeholder_token == '<my-style>'
    assert cfg.model.initializer_token == 'painting'
    assert cfg.model.pretrained_model == 'stable-diffusion-v1-5/stable-diffusion-v1-5'


@pytest.mark.parametrize('path', PROJECT_CONFIGS, ids=lambda p: f'{p.parent.parent.name}/{p.stem}')
def test_project_configs_build_their_model_and_dataset(path, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    cfg = load(path)
    for module in cfg.custom_imports.imports:
        importlib.import_module(module)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        for hook in [*cfg.default_hooks.values(), *cfg.custom_hooks]:
            assert hook is None or HOOKS.get(hook['type']) is not None, hook  # None: removed
        assert LOOPS.get(cfg.train_cfg.type) is not None
        model = MODELS.build(cfg.model)
        dataset = DATASETS.build(cfg.train_dataloader.dataset)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) > 0
    assert len(dataset) > 0 and dataset[0]
