"""TrainableParamsOptimWrapperConstructor: the optimizer sees the learned rows and nothing else."""
import pytest
import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper, build_optim_wrapper
from mmengine.registry import DefaultScope
from mmti_testing import REPO_ROOT, build_tiny_model
from torch import nn

from mmti.engine import TrainableParamsOptimWrapperConstructor


@pytest.fixture(scope='module')
def model():
    """The tiny model with a second, frozen concept loaded beside the trained one."""
    model = build_tiny_model(num_vectors=2)
    model.load_embeddings({'<frozen>': torch.ones(3, 32)})
    return model


@pytest.fixture(scope='module')
def config_optim_wrapper() -> dict:
    return Config.fromfile(str(REPO_ROOT / 'configs' / 'textual_inversion_tiny.py')).optim_wrapper


def build(model, optim_wrapper_cfg) -> OptimWrapper:
    # As the Runner does: names resolve in mmti's scope.
    with DefaultScope.overwrite_default_scope('mmti'):
        return build_optim_wrapper(model, optim_wrapper_cfg)


def params_of(wrapper: OptimWrapper) -> list[torch.Tensor]:
    return [p for group in wrapper.optimizer.param_groups for p in group['params']]


def test_config_optimizer_holds_exactly_the_trainable_rows(model, config_optim_wrapper):
    assert config_optim_wrapper.constructor == 'TrainableParamsOptimWrapperConstructor'
    wrapper = build(model, config_optim_wrapper)
    assert isinstance(wrapper, OptimWrapper)
    assert isinstance(wrapper.optimizer, torch.optim.AdamW)
    trained = model.token_embedding.concept_rows('<cat-toy>')
    params = params_of(wrapper)
    assert len(params) == 1 and params[0] is trained
    assert trained.shape == (2, 32) and trained.requires_grad
    assert not model.token_embedding.concept_rows('<frozen>').requires_grad
    (group,) = wrapper.optimizer.param_groups
    assert group['weight_decay'] == 0.0  # the config's, not AdamW's default 0.01
    assert group['lr'] == 5e-4 and group['betas'] == (0.9, 0.999) and group['eps'] == 1e-8


def test_optimizer_state_covers_only_the_rows(model, config_optim_wrapper):
    wrapper = build(model, config_optim_wrapper)
    trained = model.token_embedding.concept_rows('<cat-toy>')
    before = trained.detach().clone()
    frozen = {name: p.detach().clone() for name, p in model.named_parameters()
              if not p.requires_grad and 'token_embedding.rows' in name}
    trained.grad = torch.ones_like(trained)
    wrapper.step()
    wrapper.zero_grad()
    assert not torch.equal(trained.detach(), before)
    assert list(wrapper.optimizer.state) == [trained]
    for name, p in model.named_parameters():
        if name in frozen:
            assert torch.equal(p.detach(), frozen[name])




@pytest.mark.parametrize('paramwise_cfg', [
    dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
    dict(custom_keys={'token_embedding': dict(lr_mult=0.1),
                                   'unet': dict(lr_mult=10.0)}),
    dict(bypass_duplicate=True, custom_keys={'token_embedding': dict(lr_mult=0.1),
                                             'unet': dict(lr_mult=10.0)}),
    dict(bypass_duplicate=True, norm_decay_mult=0.0),
])
def test_paramwise_cfg_still_excludes_frozen_parameters(model, config_optim_wrapper,
                                                        paramwise_cfg):
    cfg = dict(config_optim_wrapper, paramwise_cfg=paramwise_cfg)
    wrapper = build(model, cfg)
    frozen = {id(p) for p in model.parameters() if not p.requires_grad}
    assert len(frozen) > 100
    params = params_of(wrapper)
    assert not [p for p in params if id(p) in frozen]
    assert len(params) == 1 and params[0] is model.token_embedding.concept_rows('<cat-toy>')
    (group,) = wrapper.optimizer.param_groups
    expected_lr = 5e-5 if 'custom_keys' in paramwise_cfg else 5e-4
    assert group['lr'] == pytest.approx(expected_lr)


def test_no_trainable_parameters_is_a_clear_error():
    frozen = nn.Linear(4, 4).requires_grad_(False)
    constructor = TrainableParamsOptimWrapperConstructor(
        dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3)))
    with pytest.raises(ValueError, match='no trainable parameters'):
        constructor(frozen)


def test_no_trainable_rows_in_the_real_model_is_a_clear_error(config_optim_wrapper):
    model = build_tiny_model()
    model.token_embedding.concept_rows('<cat-toy>').requires_grad_(False)
    with pytest.raises(ValueError, match='no trainable parameters'):
        build(model, config_optim_wrapper)


def test_no_trainable_parameters_with_paramwise_cfg_is_a_clear_error():
    frozen = nn.Linear(4, 4).requires_grad_(False)
    constructor = TrainableParamsOptimWrapperConstructor(
        dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.0)),
        paramwise_cfg=dict(bias_decay_mult=0.0))
    with pytest.raises(ValueError, match='no trainable parameters'):
        constructor(frozen)
