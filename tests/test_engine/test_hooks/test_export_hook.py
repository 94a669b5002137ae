"""ExportHook: a real (tiny) mmengine run of projects/toy_world/configs/clip.py leaves a loadable export."""
import itertools
from types import SimpleNamespace

import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from transformers import CLIPModel, CLIPTokenizer

from mmti_testing import REPO_ROOT, TINY_SD
from mmti.engine import build_runner
from mmti.engine.hooks.export_hook import ExportHook
from mmti.registry import HOOKS

CLIP_CONFIG = REPO_ROOT / 'projects' / 'toy_world' / 'configs' / 'clip.py'
_run_ids = itertools.count()


def tiny_clip_config(work_dir, max_iters: int = 3, export_interval: int = 2) -> Config:
    cfg = Config.fromfile(str(CLIP_CONFIG))
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = f'mmti_test_export_{next(_run_ids)}'
    cfg.model.tokenizer = str(TINY_SD / 'tokenizer')
    cfg.model.text_config = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=64)
    cfg.model.vision_config = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=64, patch_size=8, image_size=32)
    cfg.model.projection_dim = 32
    cfg.train_dataloader.batch_size = 4
    cfg.train_dataloader.dataset.size = 32
    cfg.train_cfg.max_iters = max_iters
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = 100
    hooks = [h for h in cfg.custom_hooks if h.type != 'ExportHook']
    # The config exports the model and its text tower (the toy SD's text encoder).
    assert {h.get('method', 'export') for h in cfg.custom_hooks if h.type == 'ExportHook'} == {
        'export', 'export_text_encoder'}
    cfg.custom_hooks = hooks + [dict(type='ExportHook', interval=export_interval),
                                dict(type='ExportHook', subdir='export_text',
                                     method='export_text_encoder')]
    return cfg


def test_config_run_exports_loadable_weights(tmp_path):
    runner = build_runner(tiny_clip_config(tmp_path / 'work'))
    initial = {k: v.clone() for k, v in runner.model.clip.state_dict().items()}
    runner.train()
    assert runner.iter == 3
    export = tmp_path / 'work' / 'export'
    text_export = tmp_path / 'work' / 'export_text'
    from transformers import CLIPTextModel
    assert CLIPTextModel.from_pretrained(text_export).config.hidden_size == 32
    assert CLIPTokenizer.from_pretrained(text_export).model_max_length == 77
    assert (export / 'model.safetensors').is_file()
    loaded = CLIPModel.from_pretrained(str(export))
    trained = runner.model.clip.state_dict()
    state = loaded.state_dict()
    assert set(state) == set(trained)
    for key, value in trained.items():  # the final weights, not the step-2 export
        torch.testing.assert_close(state[key], value, msg=key)
    moved = [k for k in trained if not torch.equal(trained[k], initial[k])]
    assert 'text_projection.weight' in moved and 'logit_scale' in moved
    assert CLIPTokenizer.from_pretrained(str(export)).model_max_length == 77
    # no temporary folders left next to the export
    assert not [p.name for p in (tmp_path / 'work').iterdir() if p.name.startswith('.export')]


class FakeModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = []

    def export(self, path):
        self.calls.append(path)
        return path


def test_interval_and_end_of_training(tmp_path):
    hook = HOOKS.build(dict(type='ExportHook', interval=2, subdir='out'))
    assert isinstance(hook, ExportHook)
    model = FakeModel()
    runner = SimpleNamespace(model=model, work_dir=str(tmp_path), iter=0,
                             logger=MMLogger.get_instance('mmti_test_export_hook'))
    exported_at = []
    for it in range(5):
        runner.iter = it
        before = len(model.calls)
        hook.after_train_iter(runner, batch_idx=it)
        if len(model.calls) > before:
            exported_at.append(it + 1)
    assert exported_at == [2, 4]
    runner.iter = 5
    hook.after_train(runner)
    assert len(model.calls) == 3 and model.calls[-1] == tmp_path / 'out'

    only_end = ExportHook()  # interval 0: only when training ends
    model.calls.clear()
    for it in range(5):
        runner.iter = it
        only_end.after_train_iter(runner, batch_idx=it)
    assert model.calls == []
    only_end.after_train(runner)
    assert model.calls == [tmp_path / 'export']
