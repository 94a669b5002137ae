"""tools/time_to_concept.py and tools/diffusers_example_runner.py.

The benchmark itself needs diffusers' example script (not in this repository)
and hours; here its parts are checked: the times and thresholds read from
real snapshot files and metrics files, the summary over rounds, the commands,
the torchvision stand-in's flip, and the launcher that runs a script with it.
"""
import importlib.util
import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
from mmengine.config import Config
from PIL import Image
from tool_runner import load_tool

from mmti.evaluation.concept_scores import gap_closed
from mmti.utils import UserError
from mmti_testing import REPO_ROOT

ttc = load_tool('time_to_concept')
runner = load_tool('diffusers_example_runner')

LAUNCHED_AT = 1_800_000_000.0


def write_run(folder, gaps_by_step, seconds_per_step=2.0, startup=30.0):
    """Snapshot files timed as a run would write them, and a metrics.json for each.

    The metrics are evaluate.py's format; the learned row's image similarity
    is set so that the gap closed is the given value (initializer 0.5, real 0.9).
    """
    folder.mkdir(parents=True, exist_ok=True)
    for step, gap in gaps_by_step.items():
        snapshot = folder / f'learned_embeds-steps-{step}.safetensors'
        snapshot.write_bytes(b'')
        mtime = LAUNCHED_AT + startup + step * seconds_per_step
        os.utime(snapshot, (mtime, mtime))
        metrics = {'rows': {
            'learned': {'image_similarity': 0.5 + 0.4 * gap, 'text_similarity': 0.29},
            'initializer': {'image_similarity': 0.5, 'text_similarity': 0.30},
            'image only': {'image_similarity': 0.9, 'text_similarity': 0.1}}}
        (folder / f'metrics-{step}.json').write_text(json.dumps(metrics))
    (folder / 'learned_embeds.safetensors').write_bytes(b'')  # the final file is no snapshot


def reading_metrics(folder, calls):
    def evaluate(step, path):
        calls.append(step)
        assert path.name == f'learned_embeds-steps-{step}.safetensors'
        return json.loads((folder / f'metrics-{step}.json').read_text())['rows']
    return evaluate


def test_times_come_from_snapshot_mtimes_and_evaluation_stops_at_85_percent(tmp_path):
    # Steps 100 and 1000 sort numerically; the curve dips after 80% (as real ones do).
    write_run(tmp_path, {1000: 0.95, 50: 0.40, 100: 0.81, 150: 0.78, 200: 0.86, 300: 0.90})
    found = ttc.snapshots(tmp_path)
    assert [step for step, _ in found] == [50, 100, 150, 200, 300, 1000]
    calls = []
    points = ttc.score_snapshots(found, LAUNCHED_AT, reading_metrics(tmp_path, calls), 0.85)
    assert calls == [50, 100, 150, 200]  # lazily, in step order, up to the first >= 85%
    assert [round(p['wall_s'], 3) for p in points] == [130.0, 230.0, 330.0, 430.0]
    assert points[1]['gap_closed'] == pytest.approx(0.81)
    assert points[1]['text_ratio'] == pytest.approx(0.29 / 0.30)
    assert ttc.first_reach(points, 0.80) == {'reached': True, 'step': 100,
                                             'wall_s': pytest.approx(230.0)}
    assert ttc.first_reach(points, 0.85)['step'] == 200
    missed = ttc.first_reach(points, 0.99)
    assert not missed['reached'] and missed['step'] == 200  # searched up to the last scored

    calls.clear()
    everything = ttc.score_snapshots(found, LAUNCHED_AT, reading_metrics(tmp_path, calls), None)
    assert calls == [50, 100, 150, 200, 300, 1000] and len(everything) == 6


def test_the_final_file_of_a_stopped_run_is_the_stop_step(tmp_path):
    write_run(tmp_path, {25: 0.5, 50: 0.8})
    assert [step for step, _ in ttc.snapshots(tmp_path)] == [25, 50]  # not stopped: no final
    (tmp_path / 'learning_signal.json').write_text(json.dumps({'stopped': {'step': 70}}))
    found = ttc.snapshots(tmp_path)
    assert [(step, path.name) for step, path in found] == [
        (25, 'learned_embeds-steps-25.safetensors'), (50, 'learned_embeds-steps-50.safetensors'),
        (70, 'learned_embeds.safetensors')]
    (tmp_path / 'learning_signal.json').write_text(json.dumps({'stopped': {'step': 50}}))
    assert [step for step, _ in ttc.snapshots(tmp_path)] == [25, 50]  # already a snapshot


def reach(wall_s, step, reached=True):
    return {'reached': reached, 'step': step, 'wall_s': wall_s}


def test_median_over_rounds_counts_a_miss_as_slowest():
    assert ttc.median_reach([reach(30, 3), reach(10, 1), reach(20, 2)]) == reach(20, 2)
    # Two of three rounds reached: the median is the slower of those two.
    assert ttc.median_reach([reach(500, 50, False), reach(10, 1), reach(20, 2)]) == reach(20, 2)
    # Two of three missed: not reached; the bound is the shortest of their searches,
    # which both missed rounds support.
    assert ttc.median_reach([reach(500, 50, False), reach(10, 1), reach(400, 40, False)]) == \
        reach(400, 40, False)
    assert ttc.median_reach([reach(10, 1), reach(30, 3)]) == reach(20, 2)  # even: the mean


def test_summary_ratios_per_round_and_median_and_the_table(tmp_path):
    runs = []
    for number, (d_gaps, m_gaps) in enumerate([
            ({100: 0.5, 200: 0.82, 300: 0.86}, {25: 0.81, 50: 0.9}),
            ({100: 0.5, 200: 0.7, 300: 0.79}, {25: 0.7, 50: 0.86}),
            ({100: 0.6, 200: 0.83, 300: 0.85}, {25: 0.82, 50: 0.84})], start=1):
        for tool, gaps, per_step in (('diffusers', d_gaps, 1.0), ('mmti', m_gaps, 0.4)):
            points = [{'step': s, 'wall_s': 10 + s * per_step, 'gap_closed': g,
                       'text_ratio': 1.0} for s, g in gaps.items()]
            runs.append({'round': number, 'tool': tool, 'points': points})
    table = ttc.summarize(runs)
    first = table['rounds'][0]['80%']
    assert first['diffusers'] == reach(210, 200) and first['mmti'] == reach(20, 25)
    assert first['ratio'] == {'ratio': pytest.approx(10.5), 'bound': 'exact'}
    second = table['rounds'][1]['80%']  # diffusers never reached 80%: a lower bound
    assert second['ratio'] == {'ratio': pytest.approx(310 / 30), 'bound': 'at least'}
    third = table['rounds'][2]['85%']  # mmti never reached 85%: no ratio
    assert third['ratio'] == {'ratio': None, 'bound': 'mmti did not reach'}
    median = table['median']['80%']
    assert median['diffusers'] == reach(210, 200) and median['mmti'] == reach(20, 25)
    assert median['ratio']['ratio'] == pytest.approx(10.5)
    text = ttc.markdown(table)
    lines = text.splitlines()
    assert lines[0] == ('| round | diffusers 80% | mmti 80% | diffusers 85% | mmti 85% | '
                        'ratio 80% | ratio 85% |')
    assert lines[2] == '| 1 | 210 s (step 200) | 20 s (step 25) | 310 s (step 300) | ' \
                       '30 s (step 50) | 10.5x | 10.3x |'
    assert '| 2 | not reached in 300 steps / 310 s |' in text and '>= 10.3x' in text
    assert lines[-1].startswith('| median |')


def test_commands_use_the_readme_recipe_unmodified_script_and_image_only_folder(tmp_path):
    cfg = Config.fromfile(str(REPO_ROOT / ttc.DEFAULT_CONFIG), import_custom_modules=False)
    train = REPO_ROOT / cfg.train_dataloader.dataset.data_root
    images = ttc.images_only_folder(train, tmp_path / 'images')
    assert sorted(p.name for p in images.iterdir()) == sorted(
        p.name for p in train.glob('*.png'))
    assert any(train.glob('*.txt'))  # the captions stay behind

    command = ttc.diffusers_command(tmp_path / 'textual_inversion.py', cfg, images, 3000, 100,
                                    tmp_path / 'out')
    assert command[1].endswith('diffusers_example_runner.py')
    assert command[2] == str(tmp_path / 'textual_inversion.py')
    flags = dict(zip(command[3::1], command[4::1]))
    assert flags['--learning_rate'] == '5.0e-04' and '--scale_lr' in command
    assert flags['--train_batch_size'] == '1' and flags['--gradient_accumulation_steps'] == '4'
    assert flags['--lr_scheduler'] == 'constant' and flags['--max_train_steps'] == '3000'
    assert flags['--placeholder_token'] == '<purple-dotted-star>'
    assert flags['--initializer_token'] == 'star' and flags['--resolution'] == '32'
    assert flags['--save_steps'] == '100' and flags['--seed'] == '0'
    assert flags['--train_data_dir'] == str(images)

    mmti = ttc.mmti_command('c.py', 25, ['train_cfg.max_iters=40'], tmp_path / 'w')
    assert mmti[2:] == ['c.py', '--work-dir', str(tmp_path / 'w'), '--cfg-options',
                        'default_hooks.embedding_save.interval=25',
                        'default_hooks.similarity=None',  # scored afterwards, untimed
                        'train_cfg.max_iters=40']


def test_bad_input_is_refused_before_anything_runs(tmp_path, capsys):
    with pytest.raises(SystemExit):
        ttc.main(['--diffusers-script', str(tmp_path / 'missing.py')])
    assert 'missing.py does not exist' in capsys.readouterr().err
    script = tmp_path / 'ti.py'
    script.write_text('')
    with pytest.raises(SystemExit):
        ttc.main(['--diffusers-script', str(script), '--rounds', '0'])
    assert '--rounds must be at least 1' in capsys.readouterr().err
    with pytest.raises(UserError, match=r"missing \['clip', 'held_out_dir'\]"):
        ttc.main(['--diffusers-script', str(script),
                  '--mmti-config', str(REPO_ROOT / 'configs' / 'textual_inversion_tiny.py')])
    with pytest.raises(SystemExit):
        ttc.main(['--diffusers-script', str(script), '--diffusers-steps', '50'])
    assert ('--diffusers-save-steps 100 is more than --diffusers-steps 50'
            in capsys.readouterr().err)
    (tmp_path / 'a_file').write_text('')
    with pytest.raises(SystemExit):
        ttc.main(['--diffusers-script', str(script), '--out-dir', str(tmp_path / 'a_file')])
    assert 'is a file; pass a folder' in capsys.readouterr().err
    with pytest.raises(UserError, match='trains many concepts'):
        ttc.main(['--diffusers-script', str(script), '--mmti-config',
                  str(REPO_ROOT / 'configs' / 'textual_inversion_toy_concepts.py')])
    with pytest.raises(UserError, match='evaluation.held_out_dir /nowhere is not a folder'):
        ttc.main(['--diffusers-script', str(script), '--cfg-options',
                  'evaluation.held_out_dir=/nowhere'])
    (tmp_path / 'out' / 'round_1').mkdir(parents=True)  # an earlier benchmark is not deleted
    with pytest.raises(UserError, match='already holds a benchmark'):
        ttc.main(['--diffusers-script', str(script), '--out-dir', str(tmp_path / 'out')])
    assert (tmp_path / 'out' / 'round_1').is_dir()


def test_cfg_options_set_the_concept_for_diffusers_and_the_evaluation_too(tmp_path):
    options = ['train_dataloader.dataset.data_root=data/toy_concepts/green-dotted-cross/train',
               'model.placeholder_token=<green-dotted-cross>', 'model.initializer_token=cross',
               'evaluation.held_out_dir=data/toy_concepts/green-dotted-cross/held_out',
               'model.num_vectors=3']
    config = str(REPO_ROOT / ttc.DEFAULT_CONFIG)
    cfg = ttc.benchmark_config(config, options, 'toy')
    command = ttc.diffusers_command(tmp_path / 'ti.py', cfg, tmp_path / 'images', 40, 20,
                                    tmp_path / 'out')
    flags = dict(zip(command[3::1], command[4::1]))
    assert flags['--placeholder_token'] == '<green-dotted-cross>'
    assert flags['--initializer_token'] == 'cross'
    assert cfg.train_dataloader.dataset.data_root.endswith('green-dotted-cross/train')
    # tools/evaluate.py gets the same overrides, the snapshot's own row count last (it wins).
    from safetensors.torch import save_file
    import torch
    snapshot = tmp_path / 'learned_embeds-steps-20.safetensors'
    save_file({'<green-dotted-cross>': torch.zeros(1, 32)}, str(snapshot))
    evaluate = ttc.SnapshotEvaluator(config, cfg_options=options).command(snapshot,
                                                                          tmp_path / 'eval')
    tail = evaluate[evaluate.index('--cfg-options') + 1:]
    assert tail == [*options, 'model.num_vectors=1']
    # An override naming no field of the config is refused before anything runs.
    with pytest.raises(UserError, match='model.placeholdr_token'):
        ttc.benchmark_config(config, ['model.placeholdr_token=<x>'], 'toy')


def test_later_snapshots_render_only_the_learned_row_with_tools_evaluate(tmp_path):
    """The real tools/evaluate.py, as cheap as it goes (1 sample, 1 step: about 20 s)."""
    import torch
    from safetensors.torch import save_file
    hidden = json.loads((REPO_ROOT / 'data/toy/sd/text_encoder/config.json').read_text())
    snapshot = tmp_path / 'learned_embeds-steps-20.safetensors'  # diffusers' layout
    save_file({'<purple-dotted-star>': 0.02 * torch.randn(1, hidden['hidden_size'],
                                                          generator=torch.manual_seed(0))},
              str(snapshot))
    evaluator = ttc.SnapshotEvaluator(str(REPO_ROOT / ttc.DEFAULT_CONFIG),
                                      ['--num-samples', '1', '--steps', '1'])
    measured_once = {'initializer': {'image_similarity': 0.1, 'text_similarity': 0.5},
                     'image only': {'image_similarity': 0.9, 'text_similarity': 0.2}}
    evaluator.baseline = dict(measured_once)  # as the first snapshot's evaluation leaves it
    rows = evaluator(snapshot, tmp_path / 'eval')
    written = json.loads((tmp_path / 'eval' / 'metrics.json').read_text())['rows']
    assert sorted(written) == ['image only', 'learned']  # no initializer renders this time
    assert written['learned']['num_images'] == 12  # 8 held-out captions + 4 edit prompts
    assert rows == {**measured_once, 'learned': written['learned']}
    learned = written['learned']['image_similarity']
    assert gap_closed(rows) == pytest.approx((learned - 0.1) / (0.9 - 0.1))  # the kept baseline


def load_shim_transforms(folder):
    """The stand-in's transforms module, imported under another name (never as torchvision,
    which would mislead transformers in this test process)."""
    runner.write_torchvision_shim(folder)
    spec = importlib.util.spec_from_file_location('shim_transforms',
                                                  folder / 'torchvision' / 'transforms.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_stand_in_flips_a_pil_image_with_probability_p(tmp_path):
    transforms = load_shim_transforms(tmp_path)
    pixels = np.arange(4 * 3 * 3, dtype=np.uint8).reshape(4, 3, 3)  # asymmetric left-right
    image = Image.fromarray(pixels)
    assert np.array_equal(np.asarray(transforms.RandomHorizontalFlip(p=1.0)(image)),
                          pixels[:, ::-1])
    assert np.array_equal(np.asarray(transforms.RandomHorizontalFlip(p=0.0)(image)), pixels)
    random.seed(0)
    flip = transforms.RandomHorizontalFlip()  # torchvision's default p=0.5
    flipped = sum(not np.array_equal(np.asarray(flip(image)), pixels) for _ in range(400))
    assert 160 < flipped < 240


def test_launcher_runs_a_script_with_the_stand_in_and_transformers_still_imports(tmp_path):
    script = tmp_path / 'example.py'
    script.write_text(
        'import sys\n'
        'from torchvision import transforms\n'
        'from transformers import CLIPTextModel, CLIPTokenizer  # loads the image utilities\n'
        'import diffusers\n'
        'import transformers.utils.import_utils as t\n'
        'print("name", __name__)\n'
        'print("argv", sys.argv[1:])\n'
        'print("shim", transforms.__file__.endswith("torchvision/transforms.py"),\n'
        '      "mmti_torchvision_shim_" in transforms.__file__)\n'
        'print("flip", type(transforms.RandomHorizontalFlip(0.5)).__name__)\n'
        'print("transformers sees torchvision", t.is_torchvision_available())\n'
        'print("script dir on path", sys.path[1] == ' + repr(str(tmp_path)) + ')\n')
    launcher = str(REPO_ROOT / 'tools' / 'diffusers_example_runner.py')
    result = subprocess.run([sys.executable, launcher, str(script), '--flag', 'x y'],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, HF_HUB_OFFLINE='1'))
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines == ['name __main__', "argv ['--flag', 'x y']", 'shim True True',
                     'flip RandomHorizontalFlip', 'transformers sees torchvision False',
                     'script dir on path True']
    assert runner.SHIM_NOTE in result.stderr

    missing = subprocess.run([sys.executable, launcher, str(tmp_path / 'nope.py')],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0 and 'usage:' in missing.stderr


def test_a_config_mistake_is_one_line_and_exit_status_2(tmp_path):
    script = tmp_path / 'ti.py'
    script.write_text('')
    result = subprocess.run([sys.executable, str(REPO_ROOT / 'tools' / 'time_to_concept.py'),
                             '--diffusers-script', str(script), '--out-dir', str(tmp_path / 'o'),
                             '--cfg-options', 'train_cfg.max_iterz=3'],
                            capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, HF_HUB_OFFLINE='1'))
    assert result.returncode == 2
    assert result.stderr.startswith('tools/time_to_concept.py: error: --cfg-options '
                                    'train_cfg.max_iterz: ')
    assert "did you mean 'max_iters'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / 'o').exists()
