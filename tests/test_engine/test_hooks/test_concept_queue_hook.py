"""Many concepts in real tiny runs (toy Stable Diffusion, toy concepts, 32 px):
a concept trained among others follows its trajectory alone, the queue trains
concepts one after another with the stop they have alone, each leaves its own
outputs, and an interrupted run resumes to the same result."""
import itertools
import json
import re

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from mmengine.config import Config
from mmengine.hooks import Hook
from PIL import Image

from mmti.engine.hooks import ConceptQueueHook
from mmti.engine.hooks.validation_sample_hook import labelled_grid
from mmti.engine.resume import RunFinished, check_not_finished
from mmti.engine.stop_rules import PlateauStop
from mmti.fileio.embedding_file import read_embedding_file
from mmti_testing import REPO_ROOT

TOY_SD = REPO_ROOT / 'data' / 'toy' / 'sd'
STAR, TRIANGLE, CROSS = '<purple-dotted-star>', '<orange-striped-triangle>', '<green-dotted-cross>'
INITIALIZERS = {STAR: 'star', TRIANGLE: 'triangle', CROSS: 'cross'}
# Small windows so the rule can stop a concept within a few of its steps.
STOP = dict(window=2, min_drop=0.3)
_run_ids = itertools.count()


def toy_concept(token: str) -> dict:
    name = token.strip('<>')
    return dict(placeholder_token=token, initializer_token=INITIALIZERS[token], num_vectors=2,
                data_root=str(REPO_ROOT / 'data' / 'toy_concepts' / name / 'train'),
                caption_files=True)  # as its concept.json says


def concepts_config(work_dir, tokens, lanes, max_steps, stop=None, interval=2,
                    checkpoint_interval=0, samples=False, max_iters=40,
                    all_timesteps=False) -> Config:
    """configs/textual_inversion_toy_concepts.py made small: 2 samples of each
    concept a step, a 5-sample learning signal, no renders unless ``samples``.
    ``all_timesteps`` trains at all 1000 timesteps instead of the config's
    range: the queue run's tiny stop rule was set on that trajectory (both
    concepts stop within 8 steps, at different steps)."""
    cfg = Config.fromfile(str(REPO_ROOT / 'configs' / 'textual_inversion_toy_concepts.py'))
    concepts = [toy_concept(t) for t in tokens]
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = f'mmti_concepts_test_{next(_run_ids)}'  # own MessageHub and logger
    cfg.model.pretrained_model = str(TOY_SD)
    cfg.model.concepts = concepts
    if all_timesteps:
        cfg.model.train_timesteps = None
    cfg.model.validation_prompts = (['a large {} in the center on a white background']
                                    if samples else [])
    cfg.model.validation_cfg.num_inference_steps = 2
    cfg.train_dataloader.dataset.concepts = concepts
    cfg.train_dataloader.batch_size = 2
    cfg.train_dataloader.batch_sampler.concepts_per_batch = lanes
    cfg.train_cfg.max_iters = max_iters
    cfg.default_hooks.concept_queue.update(interval=interval, num_samples=2, stop=stop,
                                           max_steps=max_steps)
    cfg.default_hooks.checkpoint.interval = checkpoint_interval
    cfg.default_hooks.checkpoint.max_keep_ckpts = -1
    cfg.default_hooks.embedding_save.interval = 0  # the final file only
    cfg.default_hooks.progress = None
    return cfg


class RecordConcepts(Hook):
    """Every concept's rows before training and after each step (after every
    other hook), and which concepts the step's batch held."""

    priority = 'LOWEST'

    def __init__(self):
        self.rows: dict[int, dict[str, torch.Tensor]] = {}
        self.trained: dict[int, list[str]] = {}

    def _record(self, runner, step):
        model = runner.model
        self.rows[step] = {t: model.token_embedding.concept_rows(t).detach().clone()
                           for t in model.placeholder_tokens}

    def before_train(self, runner):
        self._record(runner, runner.iter)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self._record(runner, runner.iter + 1)
        self.trained[runner.iter + 1] = list(dict.fromkeys(data_batch['concepts']))


def train(cfg: Config, resume=False, interrupt_at=None):
    from conftest import Interrupt
    from mmti.engine import build_runner
    cfg.resume = resume
    runner = build_runner(cfg)
    recorder = RecordConcepts()
    runner.register_hook(recorder)
    if interrupt_at is not None:
        runner.register_hook(Interrupt(interrupt_at))
    runner.train()
    return runner, recorder


def assert_png(path) -> None:
    assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    with Image.open(path) as image:
        assert image.format == 'PNG' and min(image.size) >= 32


def queue_state(work_dir) -> dict:
    return json.loads((work_dir / 'concepts.json').read_text(encoding='utf-8'))


# ------------------------------------------------------------------ isolation
def test_a_concept_among_others_follows_its_trajectory_alone(tmp_path):
    steps = 6
    # The star in the middle of the list: its token ids and its place in the
    # batch differ from the run where it is alone, its samples do not. (Its
    # learning signal is measured at step 0 only; the queue tests compare it.)
    _, among = train(concepts_config(tmp_path / 'among', [TRIANGLE, STAR, CROSS], lanes=3,
                                     max_steps=steps, interval=100))
    _, alone = train(concepts_config(tmp_path / 'alone', [STAR], lanes=1, max_steps=steps,
                                     interval=100))
    assert sorted(among.rows) == sorted(alone.rows) == list(range(steps + 1))
    assert all(among.trained[s] == [TRIANGLE, STAR, CROSS] for s in range(1, steps + 1))
    differences = []
    for step in range(steps + 1):
        ours, theirs = among.rows[step][STAR], alone.rows[step][STAR]
        differences.append((ours - theirs).abs().max().item())
        assert torch.allclose(ours, theirs, rtol=1e-6, atol=1e-6), (step, differences)
    print(f'largest |star among 3 - star alone| per step: {differences}')
    for step in range(1, steps + 1):  # every concept trains (moves) at every step
        for token in (TRIANGLE, STAR, CROSS):
            assert not torch.equal(among.rows[step][token], among.rows[step - 1][token])
    stop = {'step': steps, 'run_step': steps, 'reason': f'it reached max_steps ({steps})',
            'kind': 'max_steps'}
    assert queue_state(tmp_path / 'among')['stops'][STAR] == stop
    assert queue_state(tmp_path / 'alone')['stops'][STAR] == stop


# -------------------------------------------------------------- the queue run
@pytest.fixture(scope='module')
def queue_run(tmp_path_factory):
    """The star, then the cross, one lane, each stopped by its learning signal
    (or its 8th step); a checkpoint every 2 steps."""
    work_dir = tmp_path_factory.mktemp('queue')
    cfg = queue_config(work_dir)
    runner, recorder = train(cfg)
    return work_dir, runner, recorder


def queue_config(work_dir):
    return concepts_config(work_dir, [STAR, CROSS], lanes=1, max_steps=8, stop=STOP,
                           checkpoint_interval=2, all_timesteps=True)


def test_one_lane_trains_the_concepts_one_after_another(queue_run):
    work_dir, runner, recorder = queue_run
    state = queue_state(work_dir)
    star, cross = state['stops'][STAR], state['stops'][CROSS]
    assert star['run_step'] == star['step'] and 4 <= star['step'] <= 8
    # The cross is admitted when the star is done and trains from the next step.
    assert cross['run_step'] == star['run_step'] + cross['step']
    assert runner.iter == cross['run_step'] < 40  # the run ends when the queue is done
    expected = {s: [STAR] if s <= star['run_step'] else [CROSS]
                for s in range(1, cross['run_step'] + 1)}
    assert recorder.trained == expected
    # A concept's rows move only while it trains: the cross waits untouched,
    # the star stays exactly where it stopped.
    for step in range(1, runner.iter + 1):
        for token in (STAR, CROSS):
            moved = not torch.equal(recorder.rows[step][token], recorder.rows[step - 1][token])
            assert moved == (token in recorder.trained[step]), (step, token)
    # Measured at its own step 0 (admission), then every 2 of its steps.
    for token, stop in ((STAR, star), (CROSS, cross)):
        assert state['series'][token]['steps'] == list(range(0, stop['step'] + 1, 2))
    assert state['queue'] == {'status': ['done', 'done'], 'steps': [star['step'], cross['step']],
                              'lanes': [None]}


def test_stop_steps_follow_the_rule_and_equal_those_alone(queue_run, tmp_path):
    work_dir, _, recorder = queue_run
    state = queue_state(work_dir)
    rule = PlateauStop(**STOP)
    for token in (STAR, CROSS):
        series, stop = state['series'][token], state['stops'][token]
        expected = next((s for n, s in enumerate(series['steps'], 1)
                         if rule.reason_to_stop(series['steps'][:n], series['values'][:n])), 8)
        assert stop['step'] == expected < 8, token
        assert stop['reason'].startswith('the learning signal'), stop
    # Each concept stops on its own signal: here the star after 4 of its steps, the cross after 6.
    assert state['stops'][STAR]['step'] != state['stops'][CROSS]['step']
    # The cross alone: same stop step, same series, same rows.
    _, alone = train(concepts_config(tmp_path / 'cross', [CROSS], lanes=1, max_steps=8,
                                     stop=STOP, all_timesteps=True))
    alone_state = queue_state(tmp_path / 'cross')
    assert alone_state['stops'][CROSS]['step'] == state['stops'][CROSS]['step']
    assert alone_state['series'][CROSS]['steps'] == state['series'][CROSS]['steps']
    assert alone_state['series'][CROSS]['values'] == pytest.approx(
        state['series'][CROSS]['values'], rel=1e-5)
    step = state['stops'][CROSS]['step']
    final = recorder.rows[max(recorder.rows)][CROSS]
    difference = (final - alone.rows[step][CROSS]).abs().max().item()
    print(f'largest |cross after the star - cross alone| at its stop: {difference}')
    assert torch.allclose(final, alone.rows[step][CROSS], rtol=1e-6, atol=1e-6)


def test_each_concept_leaves_its_own_outputs(queue_run):
    work_dir, runner, recorder = queue_run
    state = queue_state(work_dir)
    pipe = StableDiffusionPipeline.from_pretrained(str(TOY_SD), safety_checker=None)
    for token in (STAR, CROSS):
        folder = work_dir / 'concepts' / token.strip('<>')
        # No validation prompts here: samples.png is checked in the capped run.
        assert sorted(p.name for p in folder.iterdir()) == [
            'curves.png', 'learned_embeds.safetensors']
        stop = state['stops'][token]
        saved = read_embedding_file(folder / 'learned_embeds.safetensors')
        assert list(saved.embeddings) == [token] and saved.step == stop['step']
        # The rows of its stop, bit for bit (the run went on for the other concept).
        assert torch.equal(saved.embeddings[token], recorder.rows[stop['run_step']][token])
        assert not torch.equal(saved.embeddings[token], recorder.rows[0][token])
        # diffusers' own loader takes it (one concept per file), both vectors.
        pipe.load_textual_inversion(str(folder / 'learned_embeds.safetensors'))
        ids = pipe.tokenizer.convert_tokens_to_ids([token, f'{token}_1'])
        loaded = pipe.text_encoder.get_input_embeddings().weight[ids]
        assert torch.equal(loaded, saved.embeddings[token])
        assert_png(folder / 'curves.png')
    # The run's combined file: every concept with its final (= stop) rows, for mmti's loader.
    combined = read_embedding_file(work_dir / 'learned_embeds.safetensors')
    assert sorted(combined.embeddings) == sorted([STAR, CROSS])
    for token in (STAR, CROSS):
        assert torch.equal(combined.embeddings[token], recorder.rows[runner.iter][token])


def test_the_summary_names_steps_reasons_and_signals(queue_run):
    work_dir, _, _ = queue_run
    state = queue_state(work_dir)
    assert state['tokens'] == [STAR, CROSS] and state['interval'] == 2
    assert state['max_steps'] == 8 and state['rule']['window'] == 2
    lines = (work_dir / 'concepts.md').read_text(encoding='utf-8').splitlines()
    assert lines[0] == '| concept | steps | stopped because | learning signal (start -> end) |'
    assert len(lines) == 4
    for line, token in zip(lines[2:], (STAR, CROSS)):
        values = state['series'][token]['values']
        cells = [c.strip() for c in line.strip('|').split('|')]
        assert cells == [token, str(state['stops'][token]['step']), state['stops'][token]['reason'],
                         f'{values[0]:.4f} -> {values[-1]:.4f}']
        assert values[-1] < values[0]  # each concept learned something


# --------------------------------------------------------------------- resume
def test_an_interrupted_run_resumes_to_the_same_result(queue_run, tmp_path):
    work_dir, runner, whole = queue_run
    expected = queue_state(work_dir)
    star_done = expected['stops'][STAR]['run_step']
    broken = tmp_path / 'broken'
    # Killed twice (checkpoints every 2 steps; the star stops at an even step):
    # right after the star finished and the cross took its lane (measured at its
    # step 0, not trained yet), then 2 steps into the cross (its stream resumes
    # mid-way); each time resumed from the last checkpoint.
    for step in (star_done, star_done + 2):
        assert step < runner.iter
        with pytest.raises(KeyboardInterrupt):
            train(queue_config(broken), resume=step != star_done, interrupt_at=step)
        interrupted = queue_state(broken)
        assert interrupted['stops'] == {STAR: expected['stops'][STAR]}
        assert interrupted['queue'] == {
            'status': ['done', 'training'], 'lanes': [1],
            'steps': [expected['stops'][STAR]['step'], step - star_done]}
        assert interrupted['series'][CROSS]['steps'] == list(range(0, step - star_done + 1, 2))
    resumed, after = train(queue_config(broken), resume=True)
    assert min(after.rows) == star_done + 2  # it continued from the checkpoint, not from step 0
    assert resumed.iter == runner.iter
    for step in range(star_done + 2, runner.iter + 1):
        for token in (STAR, CROSS):
            assert torch.equal(after.rows[step][token], whole.rows[step][token]), (step, token)
    assert queue_state(broken) == expected  # the rows' distances from their start too
    assert all(len(s['moved']) == len(s['steps']) for s in expected['series'].values())
    for token in (STAR, CROSS):
        name = f'concepts/{token.strip("<>")}/learned_embeds.safetensors'
        assert (broken / name).read_bytes() == (work_dir / name).read_bytes()
    assert (broken / 'concepts.md').read_text() == (work_dir / 'concepts.md').read_text()


def test_resuming_a_run_whose_queue_is_done_says_it_is_finished(queue_run):
    work_dir, runner, _ = queue_run
    last = (work_dir / 'last_checkpoint').read_text().strip()
    assert last.endswith(f'iter_{runner.iter}.pth')  # the stop is saved as the run's last
    checkpoint = torch.load(last, map_location='cpu', weights_only=True)
    assert checkpoint['concept_queue']['queue']['status'] == ['done', 'done']
    assert runner.iter < queue_config(work_dir).train_cfg.max_iters  # not finished by max_iters
    with pytest.raises(RunFinished, match='nothing to resume'):
        check_not_finished(queue_config(work_dir), last, checkpoint)


def test_a_done_run_cut_off_before_its_end_writes_its_outputs_on_resume(queue_run, tmp_path):
    import shutil
    work_dir, runner, _ = queue_run
    copy = tmp_path / 'copy'
    shutil.copytree(work_dir, copy)
    last = copy / f'iter_{runner.iter}.pth'
    (copy / 'last_checkpoint').write_text(str(last))
    # What a kill after the last concept's checkpoint leaves: no summary, no combined file.
    (copy / 'learned_embeds.safetensors').unlink()
    (copy / 'concepts.md').unlink()
    resumed, recorder = train(queue_config(copy), resume=True)
    assert resumed.iter == runner.iter and sorted(recorder.rows) == [runner.iter]  # no step
    assert (copy / 'learned_embeds.safetensors').read_bytes() == (
        work_dir / 'learned_embeds.safetensors').read_bytes()
    assert (copy / 'concepts.md').read_text() == (work_dir / 'concepts.md').read_text()
    checkpoint = torch.load(last, map_location='cpu', weights_only=True)
    with pytest.raises(RunFinished, match='nothing to resume'):  # whole again
        check_not_finished(queue_config(copy), str(last), checkpoint)


def test_resume_refuses_another_interval_or_number_of_samples(queue_run, tmp_path):
    import shutil
    from mmti.utils import UserError
    work_dir, _, _ = queue_run
    copy = tmp_path / 'copy'
    shutil.copytree(work_dir, copy)
    (copy / 'last_checkpoint').write_text(str(copy / 'iter_2.pth'))
    cfg = queue_config(copy)
    cfg.default_hooks.concept_queue.interval = 1
    with pytest.raises(UserError, match=r'with interval=2, this config with 1.*'
                                        r'default_hooks.concept_queue.interval=2\.'):
        train(cfg, resume=True)
    cfg = queue_config(copy)
    cfg.default_hooks.concept_queue.num_samples = 3
    with pytest.raises(UserError, match=r'with num_samples=2, this config with 3.*'
                                        r'default_hooks.concept_queue.num_samples=2\.'):
        train(cfg, resume=True)
    assert queue_state(copy) == queue_state(work_dir)  # nothing written


# -------------------------------------------------------------- run's cap
def test_the_runs_cap_ends_the_concepts_in_training_and_leaves_the_rest_waiting(tmp_path):
    runner, recorder = train(concepts_config(tmp_path, [STAR, TRIANGLE, CROSS], lanes=2,
                                             max_steps=8, interval=100, max_iters=2, samples=True))
    assert runner.iter == 2
    state = queue_state(tmp_path)
    assert state['queue']['status'] == ['training', 'training', 'waiting']
    capped = {'step': 2, 'run_step': 2, 'kind': 'capped',
              'reason': 'the run reached train_cfg.max_iters (2) first'}
    assert state['stops'] == {STAR: capped, TRIANGLE: capped}
    model = runner.model
    for token in (STAR, TRIANGLE):
        folder = tmp_path / 'concepts' / token.strip('<>')
        assert sorted(p.name for p in folder.iterdir()) == [
            'curves.png', 'learned_embeds.safetensors', 'samples.png']
        saved = read_embedding_file(folder / 'learned_embeds.safetensors')
        assert torch.equal(saved.embeddings[token], recorder.rows[2][token])
        # Both grids were rendered in one batch; each is its validation prompt
        # rendered with its rows alone (up to the batch's rounding).
        prompts = [t.format(token) for t in model.validation_templates]
        alone = model.val_step({'prompts': prompts})
        expected = labelled_grid([r['sample'] for r in alone], prompts, 2)
        grid = Image.open(folder / 'samples.png').convert('RGB')
        assert grid.size == expected.size
        difference = np.abs(np.asarray(grid, dtype=np.int16)
                            - np.asarray(expected.convert('RGB'), dtype=np.int16))
        assert difference.max() <= 2
    assert not (tmp_path / 'concepts' / 'green-dotted-cross').exists()
    summary = (tmp_path / 'concepts.md').read_text(encoding='utf-8')
    assert re.search(r'\| <green-dotted-cross> \| 0 \| not started \|', summary)
    log = next(tmp_path.glob('*/*.log')).read_text(encoding='utf-8')
    assert '1 concept(s) never started (<green-dotted-cross>)' in log


@pytest.mark.parametrize('kwargs, message', [
    (dict(interval=0), 'default_hooks.concept_queue.interval must be a whole number >= 1, got 0'),
    (dict(num_samples=0.5), 'default_hooks.concept_queue.num_samples must be a whole number'),
    (dict(batch_size=-1), 'default_hooks.concept_queue.batch_size must be a whole number'),
    (dict(max_steps=0), 'default_hooks.concept_queue.max_steps must be a whole number >= 1'),
    (dict(stop=dict(window=0)), 'default_hooks.concept_queue.stop.window'),
    (dict(interval=10, stop=dict(window=5)), r'stop.window \(5\) is shorter than the interval'),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ConceptQueueHook(**kwargs)


def test_a_concept_whose_rows_do_not_learn_is_marked_not_learned(tmp_path):
    cfg = concepts_config(tmp_path, [STAR], lanes=1, max_steps=20, stop=STOP)
    cfg.optim_wrapper.optimizer.lr = 0.0  # its rows never move: the signal never falls
    from mmti.engine.hooks.learning_signal_hook import NotLearningError
    with pytest.raises(NotLearningError, match=r'No concept learned: all 1 stopped .*nothing was '
                                               r'saved as learned\. Fix: set optim_wrapper'):
        train(cfg)
    # Its rows are kept for inspection, under a name no one takes for a product.
    assert [p.name for p in (tmp_path / 'concepts' / 'purple-dotted-star').glob('*.safetensors')] \
        == ['not_learned_embeds.safetensors']
    assert not list(tmp_path.glob('learned_embeds*'))
    stop = queue_state(tmp_path)['stops'][STAR]
    assert stop['kind'] == 'not_learning' and stop['step'] == 4  # after two windows of 2 steps
    assert 'stayed at or above its start' in stop['reason']
    summary = (tmp_path / 'concepts.md').read_text(encoding='utf-8')
    assert f'| {STAR} | 4 | NOT learned: the learning signal has stayed at or above' in summary
    log = next(tmp_path.glob('*/*.log')).read_text(encoding='utf-8')
    assert f'{STAR} is NOT learned: stopped after 4 of its steps' in log


def test_a_concept_whose_rows_barely_move_is_marked_not_learned(tmp_path):
    cfg = concepts_config(tmp_path, [STAR], lanes=1, max_steps=20, stop=dict(STOP, min_move=0.1))
    cfg.optim_wrapper.optimizer.lr = 1e-4  # the signal falls by a hair; the rows hardly move
    from mmti.engine.hooks.learning_signal_hook import NotLearningError
    with pytest.raises(NotLearningError, match='No concept learned'):
        train(cfg)
    state = queue_state(tmp_path)
    stop, series = state['stops'][STAR], state['series'][STAR]
    assert stop['kind'] == 'not_learning' and stop['step'] == 4
    assert 'the rows have moved' in stop['reason'] and 'stop.min_move=0.1' in stop['reason']
    assert min(series['values'][1:]) < series['values'][0]
    assert series['moved'][0] == 0.0 and 0 < series['moved'][-1] < 0.1
