"""AutoencoderPretraining: it learns, its losses are counted once, its export loads."""
import json

import pytest
import torch
from diffusers import AutoencoderKL

from projects.toy_world.datasets.toy_world_dataset import ToyWorldDataset
from projects.toy_world.models.autoencoder_pretraining import AutoencoderPretraining

TINY_VAE = dict(block_out_channels=(8, 16),
                down_block_types=('DownEncoderBlock2D', 'DownEncoderBlock2D'),
                up_block_types=('UpDecoderBlock2D', 'UpDecoderBlock2D'),
                latent_channels=4, layers_per_block=1, norm_num_groups=8, sample_size=16,
                mid_block_add_attention=False)


@pytest.fixture(scope='module')
def batch():
    dataset = ToyWorldDataset(length=100, seed=0, size=16)
    items = [dataset[i] for i in range(4)]
    return torch.stack([it['inputs'] for it in items]), [it['noise_seeds'] for it in items]


@pytest.fixture(scope='module')
def trained(batch):
    images, seeds = batch
    torch.manual_seed(0)
    model = AutoencoderPretraining(TINY_VAE, kl_weight=1e-6)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    history = []
    for _ in range(30):
        losses = model(images, noise_seeds=seeds, mode='loss')
        total, _ = model.parse_losses(losses)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        history.append(float(losses['rec']))
    return model, history


def test_reconstruction_loss_drops(trained):
    _, history = trained
    assert history[-1] < 0.7 * history[0], history


def test_loss_parts_are_logged_not_double_counted(batch):
    images, seeds = batch
    model = AutoencoderPretraining(TINY_VAE, kl_weight=0.5)
    losses = model(images, noise_seeds=seeds, mode='loss')
    assert set(losses) == {'loss', 'rec', 'kl'}
    total, log_vars = model.parse_losses(losses)
    torch.testing.assert_close(total, losses['rec'] + 0.5 * losses['kl'])
    assert set(log_vars) == {'loss', 'rec', 'kl'}
    # Per-sample seeds make the posterior sample reproducible.
    again = model(images, noise_seeds=seeds, mode='loss')
    assert torch.equal(again['loss'], losses['loss'])


def test_export_loads_and_reconstructs_the_same(trained, batch, tmp_path):
    model, _ = trained
    images, _ = batch
    model.eval()
    path = model.export(tmp_path / 'export')
    assert path == tmp_path / 'export'
    model.export(tmp_path / 'export')  # replaces the previous export
    assert sorted(p.name for p in tmp_path.iterdir()) == ['export']  # no temp folders left
    vae = AutoencoderKL.from_pretrained(path).eval()
    with torch.no_grad():
        loaded = vae.decode(vae.encode(images).latent_dist.mean).sample
    assert torch.equal(loaded, model.reconstruct(images))
    config = json.loads((path / 'config.json').read_text())
    assert config['scaling_factor'] == pytest.approx(model.scaling_factor())
    assert model.scaling_factor() != 0.18215  # estimated from the training latents
    # The model's own config keeps its value; only the export carries the estimate.
    assert model.vae.config.scaling_factor == 0.18215
