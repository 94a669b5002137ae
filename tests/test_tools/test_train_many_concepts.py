"""tools/train.py and tools/dist_train.sh on the many-concept toy config, as subprocesses:
the queue, per-concept outputs, a SIGKILL and resume, and two processes against one."""
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from fault_matrix import assert_refused
from tool_runner import assert_quiet, run_tool

from mmti_testing import REPO_ROOT

CONFIG = 'configs/textual_inversion_toy_concepts.py'
# data/toy_concepts's sub-folders, in name order: the queue's order.
FOLDERS = ['green-dotted-cross', 'orange-striped-triangle', 'purple-dotted-star']
TOKENS = [f'<{name}>' for name in FOLDERS]
# Two lanes for three concepts: the third waits for the first to finish.
SMALL = ['train_dataloader.batch_size=2', 'train_dataloader.batch_sampler.concepts_per_batch=2',
         'default_hooks.concept_queue.interval=2', 'default_hooks.concept_queue.num_samples=5',
         'default_hooks.concept_queue.stop.window=4', 'default_hooks.concept_queue.max_steps=12',
         'train_cfg.max_iters=40', 'model.validation_cfg.num_inference_steps=2',
         'default_hooks.checkpoint.interval=2', 'default_hooks.logger.interval=1']


def train(work_dir, *options, procs: int = 0, resume: bool = False):
    extra = ['--resume'] if resume else []
    if procs:
        return run_tool('bash', 'tools/dist_train.sh', CONFIG, str(procs), '--work-dir',
                        str(work_dir), *extra, '--cfg-options', *SMALL, *options, timeout=600)
    return run_tool('tools/train.py', CONFIG, '--work-dir', str(work_dir), *extra,
                    '--cfg-options', *SMALL, *options, timeout=600)


def queue_record(work_dir) -> dict:
    return json.loads((work_dir / 'concepts.json').read_text())


@pytest.fixture(scope='module')
def finished(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('concepts')
    return work_dir, train(work_dir)


def test_queue_runs_every_concept_and_the_third_waits_for_a_lane(finished):
    work_dir, result = finished
    assert_quiet(result)
    record = queue_record(work_dir)
    assert record['queue']['status'] == ['done'] * 3
    stops = record['stops']
    assert sorted(stops) == sorted(TOKENS)
    # The third concept started only when one of the first two finished: its first
    # measurement (its step 0) came after that concept's last run step.
    first_done = min(stops[t]['run_step'] for t in TOKENS[:2])
    third = stops[TOKENS[2]]
    assert third['run_step'] - third['step'] == first_done
    for token in TOKENS:
        assert record['series'][token]['steps'][0] == 0
        assert record['series'][token]['steps'][-1] == stops[token]['step']
    summary = (work_dir / 'concepts.md').read_text()
    assert all(token in summary for token in TOKENS)
    console = result.stdout
    assert 'Done: 3 of 3 concepts' in console
    # The bar counts to the queue's bound, not max_iters (40): three concepts of at
    # most 12 steps in two lanes end by step 24.
    assert '(24/24 steps)' in result.stderr
    assert all(f'concepts/{folder}/learned_embeds.safetensors' in console for folder in FOLDERS)


def test_each_concept_has_its_own_files_and_its_rows_stay_put_after_its_stop(finished):
    work_dir, _ = finished
    combined = load_file(work_dir / 'learned_embeds.safetensors')
    assert sorted(combined) == sorted(TOKENS)
    for token, folder in zip(TOKENS, FOLDERS):
        own = work_dir / 'concepts' / folder
        rows = load_file(own / 'learned_embeds.safetensors')
        assert list(rows) == [token] and rows[token].shape == (2, combined[token].shape[1])
        # Written when the concept stopped, while others still trained: equal to the
        # final rows bit for bit, so a stopped concept was never touched again.
        assert torch.equal(rows[token], combined[token])
        for png in ('samples.png', 'curves.png'):
            assert (own / png).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


@pytest.mark.slow
def test_sigkill_and_resume_continue_the_queue_exactly(finished, tmp_path):
    reference, _ = finished
    work_dir = tmp_path / 'killed'
    env = dict(os.environ, HF_HUB_OFFLINE='1', OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
    proc = subprocess.Popen([sys.executable, 'tools/train.py', CONFIG, '--work-dir', str(work_dir),
                             '--cfg-options', *SMALL], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in proc.stdout:  # kill once a concept is done and the queue moved on
        seen.append(line)
        if 'starts training at run step' in line:
            break
    proc.kill()
    proc.wait()
    assert any('starts training' in line for line in seen), ''.join(seen[-20:])
    assert not (work_dir / 'learned_embeds.safetensors').exists()
    train(work_dir, resume=True)
    assert queue_record(work_dir) == queue_record(reference)
    for name in ['learned_embeds.safetensors'] + [f'concepts/{f}/learned_embeds.safetensors'
                                                  for f in FOLDERS]:
        got, want = load_file(work_dir / name), load_file(reference / name)
        assert all(torch.equal(got[k], want[k]) for k in want), name


@pytest.mark.slow
def test_two_processes_train_the_queue_as_one_does(finished, tmp_path):
    reference, _ = finished
    work_dir = tmp_path / 'two'
    train(work_dir, procs=2)
    one, two = queue_record(reference), queue_record(work_dir)
    assert two['queue'] == one['queue']
    assert {t: s['step'] for t, s in two['stops'].items()} == \
        {t: s['step'] for t, s in one['stops'].items()}
    a = load_file(reference / 'learned_embeds.safetensors')
    b = load_file(work_dir / 'learned_embeds.safetensors')
    for token in TOKENS:
        assert torch.allclose(a[token], b[token], atol=1e-6, rtol=0), token


@pytest.mark.parametrize('option, pattern', [
    ('train_dataloader.num_workers=2', r'num_workers=2 with ConceptBatchSampler.*num_workers=0'),
    ('default_hooks.concept_queue=None', r'ConceptBatchSampler needs default_hooks\.concept_queue'),
    ('model.concepts=data/toy_concepts/purple-dotted-star', r'concept\.json is missing'),
])
def test_queue_mistakes_are_refused_before_anything_is_written(option, pattern, tmp_path):
    work_dir = tmp_path / 'refused'
    result = run_tool('tools/train.py', CONFIG, '--work-dir', str(work_dir), '--cfg-options',
                      option, check=False)
    assert_refused(result.returncode, result.stderr, 'tools/train.py', pattern)
    assert not work_dir.exists()


def test_two_concepts_named_alike_but_for_letter_case_are_refused(tmp_path):
    # CLIP lowercases prompts: both would be one word, trained on both folders.
    config = tmp_path / 'twins.py'
    config.write_text(
        f"_base_ = [{str(REPO_ROOT / CONFIG)!r}]\n"
        "concepts = [dict(placeholder_token='<purple-dotted-star>', initializer_token='star',\n"
        "                 data_root='data/toy_concepts/purple-dotted-star/train'),\n"
        "            dict(placeholder_token='<Purple-Dotted-Star>', initializer_token='cross',\n"
        "                 data_root='data/toy_concepts/green-dotted-cross/train')]\n"
        "model = dict(concepts=concepts)\n"
        "train_dataloader = dict(dataset=dict(concepts=concepts, caption_files=True))\n")
    work_dir = tmp_path / 'refused'
    result = run_tool('tools/train.py', str(config), '--work-dir', str(work_dir), check=False)
    assert_refused(result.returncode, result.stderr, 'tools/train.py',
                   r"'<Purple-Dotted-Star>' is the same as '<purple-dotted-star>' to this "
                   r"tokenizer")
    assert not work_dir.exists()


@pytest.mark.slow
def test_sdxl_concepts_get_one_file_each_and_a_combined_pair(tmp_path):
    work_dir = tmp_path / 'xl'
    run_tool('tools/train.py', CONFIG, '--work-dir', str(work_dir), '--cfg-options',
             'model.type=TextualInversionXL', 'model.pretrained_model=data/tiny-sdxl',
             'train_dataloader.dataset.resolution=64', 'train_dataloader.batch_size=2',
             'default_hooks.concept_queue.max_steps=3', 'model.validation_cfg.num_inference_steps=2',
             timeout=600)
    first = load_file(work_dir / 'learned_embeds.safetensors')
    second = load_file(work_dir / 'learned_embeds_2.safetensors')
    assert sorted(first) == sorted(second) == sorted(TOKENS)  # SDXL's one-file layout holds one
    for token, folder in zip(TOKENS, FOLDERS):
        own = load_file(work_dir / 'concepts' / folder / 'learned_embeds.safetensors')
        assert sorted(own) == ['clip_g', 'clip_l']  # the layout A1111 and ComfyUI read
        assert torch.equal(own['clip_l'], first[token]) and torch.equal(own['clip_g'], second[token])
