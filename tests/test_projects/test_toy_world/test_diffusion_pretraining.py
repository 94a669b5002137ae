"""DiffusionPretraining: trains the UNet only, exports a loadable SD that TI accepts."""
import json
import shutil

import pytest
import torch
from diffusers import StableDiffusionPipeline

from mmti_testing import TINY_SD

import mmti.models  # noqa: F401  (registers TextualInversion)
from projects.toy_world.datasets.toy_world_dataset import ToyWorldDataset
from projects.toy_world.models.autoencoder_pretraining import AutoencoderPretraining
from projects.toy_world.models.diffusion_pretraining import DiffusionPretraining
from mmti.registry import DATASETS, MODELS
from projects.toy_world.world import COLOURS

SIZE = 16
TINY_UNET = dict(block_out_channels=(16, 32), layers_per_block=1,
                 down_block_types=('DownBlock2D', 'CrossAttnDownBlock2D'),
                 up_block_types=('CrossAttnUpBlock2D', 'UpBlock2D'),
                 attention_head_dim=2, norm_num_groups=8)
SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                beta_schedule='scaled_linear')


@pytest.fixture(scope='module')
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp('toy')
    torch.manual_seed(0)
    vae = AutoencoderPretraining(dict(
        block_out_channels=(8, 16), down_block_types=('DownEncoderBlock2D',) * 2,
        up_block_types=('UpDecoderBlock2D',) * 2, latent_channels=4, layers_per_block=1,
        norm_num_groups=8, sample_size=SIZE, mid_block_add_attention=False))
    vae.export(root / 'vae')
    # The toy CLIP's text export: CLIPTextModel and tokenizer in one folder.
    text = root / 'text'
    shutil.copytree(TINY_SD / 'text_encoder', text)
    for f in (TINY_SD / 'tokenizer').iterdir():
        shutil.copy(f, text / f.name)
    return root


@pytest.fixture(scope='module')
def batch():
    dataset = ToyWorldDataset(length=100, seed=0, size=SIZE, caption_dropout=0.25)
    items = [dataset[i] for i in range(4)]
    return (torch.stack([it['inputs'] for it in items]), [it['captions'] for it in items],
            [it['noise_seeds'] for it in items])


def build(folders, **kwargs):
    torch.manual_seed(0)
    return DiffusionPretraining(vae=str(folders / 'vae'), text_encoder=str(folders / 'text'),
                                unet_config=TINY_UNET, scheduler_config=SCHEDULE,
                                image_size=SIZE, **kwargs)


@pytest.fixture(scope='module')
def trained(folders, batch):
    images, captions, seeds = batch
    model = build(folders)
    frozen = {k: v.clone() for k, v in model.vae.state_dict().items()}
    frozen.update({f'te.{k}': v.clone() for k, v in model.text_encoder.state_dict().items()})
    unet_before = {k: v.clone() for k, v in model.unet.state_dict().items()}
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    history = []
    for _ in range(40):
        loss = model(images, captions, noise_seeds=seeds, mode='loss')['loss']
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    return model, history, frozen, unet_before


def test_config_is_completed_from_the_frozen_parts(folders):
    model = build(folders)
    assert model.unet.config.in_channels == model.vae.config.latent_channels
    assert model.unet.config.cross_attention_dim == model.text_encoder.config.hidden_size
    assert model.unet.config.sample_size == SIZE // 2
    assert all(not p.requires_grad for p in model.vae.parameters())
    assert all(not p.requires_grad for p in model.text_encoder.parameters())
    wrong_dim = dict(TINY_UNET, cross_attention_dim=7)
    with pytest.raises(ValueError, match='cross_attention_dim'):
        DiffusionPretraining(str(folders / 'vae'), str(folders / 'text'), wrong_dim, SCHEDULE)


def test_denoising_loss_drops_and_only_the_unet_changes(trained):
    model, history, frozen, unet_before = trained
    assert history[-1] < 0.8 * history[0], history
    for k, v in model.vae.state_dict().items():
        assert torch.equal(v, frozen[k]), k
    for k, v in model.text_encoder.state_dict().items():
        assert torch.equal(v, frozen[f'te.{k}']), k
    assert any(not torch.equal(v, unet_before[k]) for k, v in model.unet.state_dict().items())
    state = model.state_dict()
    assert state and all(k.startswith('unet.') for k in state)  # checkpoints: the UNet only
    model.load_state_dict(state, strict=True)


def test_prompts_padded_like_sd(folders):
    model = build(folders)
    ids = model.tokenize(['a red circle', ''])
    assert ids.shape == (2, 77)
    # The SD layout (text_encoder/ + tokenizer/ subfolders) loads the same.
    sd_layout = DiffusionPretraining(str(folders / 'vae'), str(TINY_SD), TINY_UNET, SCHEDULE)
    assert torch.equal(sd_layout.encode_prompt(['a red circle']),
                       model.encode_prompt(['a red circle']))


def test_export_is_a_stable_diffusion_folder_that_ti_loads(trained, batch, tmp_path):
    model, _, _, _ = trained
    images, captions, seeds = batch
    model.eval()
    export = model.export(tmp_path / 'export')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['export']
    index = json.loads((export / 'model_index.json').read_text())
    assert index['safety_checker'] == [None, None]
    assert index['feature_extractor'] == [None, None]
    assert index['requires_safety_checker'] is False
    assert index['scheduler'] == ['diffusers', 'DDIMScheduler']

    pipe = StableDiffusionPipeline.from_pretrained(export)
    pipe.set_progress_bar_config(disable=True)
    out = pipe('a red circle', num_inference_steps=2, output_type='np',
               generator=torch.Generator().manual_seed(0)).images
    assert out.shape == (1, SIZE, SIZE, 3)
    assert pipe.scheduler.config.beta_schedule == 'scaled_linear'
    assert pipe.scheduler.config.clip_sample is False

    ti = MODELS.build(dict(type='TextualInversion', pretrained_model=str(export),
                           placeholder_token='<x>', initializer_token='star'))
    with torch.no_grad():
        assert torch.equal(ti.encode_prompt(captions), model.encode_prompt(captions))
        # Same draws, same schedule, same conditioning: the same loss as TI's.
        ti_loss = ti.loss(images, captions, noise_seeds=seeds)['loss']
        own_loss = model.loss(images, captions, noise_seeds=seeds)['loss']
    torch.testing.assert_close(ti_loss, own_loss)
    assert ti.native_image_size() == (SIZE, SIZE)


@pytest.mark.parametrize('name', ['vae', 'sd'])
def test_toy_configs_build(name, folders):
    from mmengine.config import Config
    from mmengine.registry import DefaultScope, init_default_scope

    from mmti_testing import REPO_ROOT
    cfg = Config.fromfile(REPO_ROOT / 'projects' / 'toy_world' / 'configs' / f'{name}.py')
    assert cfg.default_scope == 'mmti'
    assert cfg.custom_hooks[-1]['type'] == 'ExportHook'
    assert cfg.optim_wrapper.clip_grad == dict(max_norm=1.0)
    assert cfg.train_dataloader.batch_size == 32
    assert cfg.train_dataloader.dataset.size == 32
    if name == 'sd':
        # The committed toy models: the SD pretraining runs from a clean checkout.
        assert (cfg.model.vae, cfg.model.text_encoder) == ('data/toy/vae', 'data/toy/clip')
    init_default_scope('mmti')
    with DefaultScope.overwrite_default_scope('mmti'):
        model = MODELS.build(cfg.model)
    if name == 'sd':
        assert model.unet.config.sample_size == 32 // model.vae_scale_factor
        assert model.noise_scheduler.config.num_train_timesteps == 1000
    else:
        assert model.vae.config.sample_size == 32


def test_zero_snr_stage_fine_tunes_the_first_on_a_zero_terminal_snr_schedule():
    from mmengine.config import Config
    from mmengine.registry import DefaultScope, init_default_scope

    from mmti_testing import REPO_ROOT
    cfg = Config.fromfile(REPO_ROOT / 'projects' / 'toy_world' / 'configs' / 'sd_zero_snr.py')
    first = Config.fromfile(REPO_ROOT / 'projects' / 'toy_world' / 'configs' / 'sd.py')
    assert cfg.load_from == f'{first.work_dir}/iter_{first.train_cfg.max_iters}.pth'
    assert cfg.model.unet_config == first.model.unet_config  # same UNet, so weights load
    assert cfg.train_cfg.max_iters == cfg.param_scheduler[-1]['end']
    init_default_scope('mmti')
    with DefaultScope.overwrite_default_scope('mmti'):
        model = MODELS.build(cfg.model)
    schedule = model.noise_scheduler
    assert schedule.config.prediction_type == 'v_prediction'
    assert schedule.alphas_cumprod[-1].item() == 0.0  # no image left at t = 999
    sampler = model.build_inference_scheduler()
    sampler.set_timesteps(25)
    assert sampler.timesteps[0].item() == 999  # sampling starts where training's noise is pure


def test_partial_captions_stage_fine_tunes_the_second_with_words_left_unsaid():
    from mmengine.config import Config

    from mmti_testing import REPO_ROOT
    cfg = Config.fromfile(REPO_ROOT / 'projects' / 'toy_world' / 'configs' / 'sd_partial_captions.py')
    second = Config.fromfile(REPO_ROOT / 'projects' / 'toy_world' / 'configs' / 'sd_zero_snr.py')
    assert cfg.load_from == f'{second.work_dir}/iter_{second.train_cfg.max_iters}.pth'
    assert cfg.work_dir not in (second.work_dir, 'work_dirs/toy_sd')
    # The same UNet and schedule as the committed data/toy/sd: only the captions change.
    assert cfg.model == second.model
    assert cfg.train_cfg.max_iters == cfg.param_scheduler[-1]['end']
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    captions = [dataset[i]['captions'] for i in range(300)]
    assert dataset.omit_look > 0 and dataset.caption_dropout > 0
    said = [c.split(' on a ')[0].split() for c in captions if c]  # before any background
    colourless = [words for words in said if not set(words) & set(COLOURS)]
    assert 0.1 < len(colourless) / len(said) < 0.5  # p = 0.25
