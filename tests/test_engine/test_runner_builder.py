"""build_runner: the Runner's config text."""
from pathlib import Path

import mmengine.config.config as mmengine_config
import torch
from mmengine.config import Config

from mmti.engine import build_runner


def _no_yapf(*args, **kwargs):
    raise AssertionError('yapf reformatted the config text')


def test_config_text_is_written_without_yapf_and_reads_back(tmp_path, monkeypatch):
    from conftest import tiny_config
    cfg = tiny_config(tmp_path, max_iters=1, checkpoint_interval=1, embedding_interval=0,
                      validation_interval=None)
    # mmengine formats through this name; the Runner must never reach it
    # (log, dump, visualizer, message hub, checkpoint meta).
    monkeypatch.setattr(mmengine_config, 'FormatCode', _no_yapf)
    runner = build_runner(cfg)
    expected = runner.cfg.to_dict()
    assert expected == cfg.to_dict() and runner.cfg.filename == cfg.filename
    runner.train()

    dumped = Path(tmp_path) / 'textual_inversion_tiny.py'
    assert Config.fromfile(str(dumped)).to_dict() == expected
    meta = torch.load(Path(tmp_path) / 'iter_1.pth', weights_only=True)['meta']
    assert Config.fromstring(meta['cfg'], '.py').to_dict() == expected
