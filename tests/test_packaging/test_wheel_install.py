"""A wheel built from the repository installs a library that trains from outside it.

The wheel goes into a fresh venv; the dependencies (torch, diffusers ...) are
lent from the test's own environment by a ``.pth`` line, so nothing is
downloaded or reinstalled, and no ``.pth`` hook of that environment (such as
an editable install of mmti) is run: the only mmti the venv can import is the
wheel's.
"""
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mmti_testing import CAT_TOY, REPO_ROOT, TINY_SD

# What a source distribution holds: enough to build the wheel.
SOURCE_FILES = ('setup.py', 'README.md', 'LICENSE', 'MANIFEST.in', 'mmti')
CONFIG = REPO_ROOT / 'configs' / 'textual_inversion_tiny.py'


def _run(cmd, cwd, timeout=600):
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'VIRTUAL_ENV')}
    env.update(HF_HUB_OFFLINE='1', OMP_NUM_THREADS='1', PIP_NO_INDEX='1',
               PIP_DISABLE_PIP_VERSION_CHECK='1')
    result = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, (f'{cmd} failed:\n{result.stdout[-2000:]}\n'
                                    f'{result.stderr[-4000:]}')
    return result


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    """(venv, outside): a venv holding only the wheel's mmti, and a folder outside the repo."""
    root = tmp_path_factory.mktemp('wheel')
    # Build from a copy, so the checkout gets no build/ or *.egg-info.
    source = root / 'source'
    source.mkdir()
    for name in SOURCE_FILES:
        src = REPO_ROOT / name
        if src.is_dir():
            shutil.copytree(src, source / name, ignore=shutil.ignore_patterns('__pycache__'))
        else:
            shutil.copy(src, source / name)
    wheels = root / 'wheels'
    _run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-w',
          wheels, source], cwd=root)
    (wheel,) = wheels.glob('mmti-*.whl')

    venv = root / 'venv'
    _run([sys.executable, '-m', 'venv', '--without-pip', venv], cwd=root)
    _run([sys.executable, '-m', 'pip', '--python', venv / 'bin' / 'python', 'install',
          '--no-deps', wheel], cwd=root)
    site = Path(_run([venv / 'bin' / 'python', '-c',
                      'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                     cwd=root).stdout.strip())
    lent = dict.fromkeys([sysconfig.get_paths()['purelib'], sysconfig.get_paths()['platlib']])
    (site / 'zz_lent_dependencies.pth').write_text(''.join(f'{p}\n' for p in lent))
    outside = root / 'elsewhere'
    outside.mkdir()
    return venv, outside


@pytest.mark.slow
def test_wheel_install_trains_from_outside_the_repository(installed):
    venv, outside = installed
    work_dir = outside / 'run'
    result = _run([
        venv / 'bin' / 'mmti-train', CONFIG, '--work-dir', work_dir, '--cfg-options',
        f'model.pretrained_model={TINY_SD}', f'train_dataloader.dataset.data_root={CAT_TOY}',
        'train_cfg.max_iters=2', 'default_hooks.checkpoint.interval=2',
        'default_hooks.embedding_save.interval=2', 'default_hooks.validation_samples.interval=2',
        'model.validation_cfg.num_inference_steps=2'], cwd=outside)
    assert 'Traceback' not in result.stderr
    rows = load_file(work_dir / 'learned_embeds.safetensors')
    assert list(rows) == ['<cat-toy>'] and rows['<cat-toy>'].shape == (1, 32)
    assert torch.isfinite(rows['<cat-toy>']).all()
    assert (work_dir / 'iter_2.pth').is_file()


@pytest.mark.slow
def test_wheel_install_imports_its_own_copy_and_builds_the_model(installed):
    venv, outside = installed
    code = (
        'import mmti\n'
        'from mmengine.config import Config\n'
        'from mmti.registry import MODELS\n'
        'from mmti.datasets import load_templates\n'
        'print(mmti.__file__)\n'
        f'cfg = Config.fromfile({str(CONFIG)!r})\n'
        f'cfg.model.pretrained_model = {str(TINY_SD)!r}\n'
        'model = MODELS.build(cfg.model)\n'
        'print(type(model).__name__, len(load_templates("object")),\n'
        '      len(load_templates("style")))\n')
    out = _run([venv / 'bin' / 'python', '-c', code], cwd=outside).stdout.split()
    location = Path(out[-4]).resolve()
    assert location.is_relative_to(venv.resolve()), location
    assert not location.is_relative_to(REPO_ROOT.resolve())
    assert out[-3:] == ['TextualInversion', '27', '19']


@pytest.mark.slow
def test_wheel_ships_the_license_and_entry_points(installed):
    venv, outside = installed
    (dist_info,) = (venv / 'lib').glob('python*/site-packages/mmti-*.dist-info')
    assert 'Apache License' in (dist_info / 'licenses' / 'LICENSE').read_text()
    for name in ('mmti-train', 'mmti-infer', 'mmti-eval', 'mmti-convert', 'mmti-test'):
        result = _run([venv / 'bin' / name, '--help'], cwd=outside)
        assert result.stdout.startswith(f'usage: {name}'), result.stdout[:200]
    # Errors name the command as it was typed.
    refused = subprocess.run([str(venv / 'bin' / 'mmti-train'), 'missing.py'], cwd=outside,
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2
    last_line = refused.stderr.strip().splitlines()[-1]
    assert last_line.startswith('mmti-train: error: config missing.py'), last_line
