"""tools/concepts_per_hour.py: its pure parts, and one tiny real run.

The benchmark itself takes the better part of an hour on 2 CPU cores; here
the wall times read from real files' modification times, the medians and
speed-ups over rounds, the packed config it writes (loaded by mmengine), the
single-concept overrides, the load wait and the tables are checked; one run
of two concepts, ten steps each, scored with one image per prompt, is
marked slow (``-m slow``): it takes minutes on a shared machine.
No assertion is about how fast anything ran.
"""
import json
import math
import os
from pathlib import Path

import pytest
from mmengine.config import Config
from tool_runner import load_tool

from mmti.datasets.concept_specs import check_concept_list
from mmti_testing import REPO_ROOT

cph = load_tool('concepts_per_hour')

LAUNCHED_AT = 1_800_000_000.0


def touch(path: Path, at: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b'')
    os.utime(path, (at, at))
    return path


def test_wall_time_is_the_newest_embedding_file_anywhere_under_the_run(tmp_path):
    touch(tmp_path / 'a' / 'learned_embeds.safetensors', LAUNCHED_AT + 40)
    touch(tmp_path / 'b' / 'concepts' / 'x' / 'learned_embeds.safetensors', LAUNCHED_AT + 95)
    touch(tmp_path / 'b' / 'samples.png', LAUNCHED_AT + 200)  # not an embedding: not counted
    assert cph.last_embedding_time([tmp_path]) - LAUNCHED_AT == pytest.approx(95)
    with pytest.raises(SystemExit, match='no embedding file'):
        cph.last_embedding_time([tmp_path / 'b' / 'missing'])
    assert cph.concepts_per_hour(6, 360.0) == pytest.approx(60.0)


def test_medians_and_speedups_per_round_and_overall():
    runs = [{'round': 1, 'approach': 'sequential', 'wall_s': 600.0},
            {'round': 1, 'approach': 'packed_6', 'wall_s': 150.0},
            {'round': 2, 'approach': 'sequential', 'wall_s': 900.0},
            {'round': 2, 'approach': 'packed_6', 'wall_s': 200.0},
            {'round': 3, 'approach': 'sequential', 'wall_s': 700.0},
            {'round': 3, 'approach': 'packed_6', 'wall_s': 350.0}]
    summary = cph.summarize(runs, num_concepts=6)
    assert summary['median']['sequential']['wall_s'] == 700.0
    assert summary['median']['packed_6']['wall_s'] == 200.0
    assert summary['median']['packed_6']['concepts_per_hour'] == pytest.approx(108.0)
    assert summary['speedup'] == {'packed_6': pytest.approx(3.5)}  # of the medians
    assert [r['speedup']['packed_6'] for r in summary['rounds']] == [
        pytest.approx(4.0), pytest.approx(4.5), pytest.approx(2.0)]
    # A round still running its packed approach has no speed-up yet.
    partial = cph.summarize(runs[:3], num_concepts=6)
    assert partial['rounds'][1]['speedup'] == {}


def test_the_six_concepts_are_distinct_and_the_packed_config_replaces_the_list(tmp_path):
    concepts = cph.toy_concepts(tmp_path)
    assert len(check_concept_list(concepts)) == 6  # tokens and output folders all distinct
    assert concepts[3]['data_root'] == str(tmp_path / 'toy_concepts_seed7' / 'purple-dotted-star'
                                           / 'train')
    twelve = cph.toy_concepts(tmp_path, 12)
    assert len(check_concept_list(twelve)) == 12 and twelve[:6] == concepts
    assert [c['placeholder_token'] for c in twelve[9:]] == [
        '<purple-dotted-star-13>', '<orange-striped-triangle-13>', '<green-dotted-cross-13>']
    assert [root.name for root, _ in cph.toy_draws(tmp_path, 7)] == [
        'toy_concepts', 'toy_concepts_seed7', 'toy_concepts_seed11']
    assert [c['placeholder_token'] for c in concepts][3:] == [
        '<purple-dotted-star-7>', '<orange-striped-triangle-7>', '<green-dotted-cross-7>']
    assert [c['initializer_token'] for c in concepts] == ['star', 'triangle', 'cross'] * 2
    path = cph.write_packed_config(tmp_path / 'packed_4.py', concepts, lanes=4, max_steps=50)
    cfg = Config.fromfile(str(path), import_custom_modules=False)
    assert cfg.model.concepts == concepts and cfg.train_dataloader.dataset.concepts == concepts
    assert cfg.model.type == 'TextualInversion'  # the rest comes from the toy concepts config
    assert cfg.train_dataloader.batch_size == 8
    assert cfg.train_dataloader.batch_sampler.concepts_per_batch == 4
    assert cfg.default_hooks.concept_queue.max_steps == 50
    assert cfg.train_cfg.max_iters == 50 * math.ceil(6 / 4)
    default = Config.fromfile(str(cph.write_packed_config(tmp_path / 'p.py', concepts, 6, None)),
                              import_custom_modules=False)
    assert default.default_hooks.concept_queue.max_steps == 600  # the shipped limit
    assert default.train_cfg.max_iters == 600


def test_single_concept_options_point_the_toy_config_at_the_concept():
    concept = cph.toy_concepts(Path('/elsewhere'))[4]  # seed 7's triangle
    cfg = Config.fromfile(str(REPO_ROOT / cph.SINGLE_CONFIG), import_custom_modules=False)
    options = dict(option.split('=', 1) for option in cph.single_options(concept, max_steps=10))
    cfg.merge_from_dict(options)
    assert cfg.model.placeholder_token == '<orange-striped-triangle-7>'
    assert cfg.model.initializer_token == 'triangle'
    seed7 = '/elsewhere/toy_concepts_seed7/orange-striped-triangle'
    assert cfg.train_dataloader.dataset.data_root == f'{seed7}/train'
    assert cfg.evaluation.held_out_dir == f'{seed7}/held_out'
    assert cfg.train_cfg.max_iters == '10'  # a string here; tools/train.py parses its options
    command = cph.train_command(cph.SINGLE_CONFIG, Path('/w'), ['a=1'])
    assert command[-4:] == ['--work-dir', '/w', '--cfg-options', 'a=1']


def test_the_load_wait_polls_until_quiet_or_the_limit():
    loads = iter([2.5, 1.7, 0.8, 3.0])
    slept = []
    seen = cph.wait_for_quiet(1.0, 180, read=lambda: next(loads), sleep=slept.append)
    assert seen == {'loads': [2.5, 1.7, 0.8], 'waited_s': 40, 'quiet': True}
    assert slept == [20, 20]
    busy = cph.wait_for_quiet(1.0, 50, read=lambda: 4.0, sleep=lambda s: None)
    assert busy == {'loads': [4.0, 4.0, 4.0], 'waited_s': 40, 'quiet': False}
    assert cph.wait_for_quiet(1.0, 180, read=lambda: 0.2, sleep=None)['waited_s'] == 0


def test_quality_rows_mean_and_worst_and_the_tables():
    scores = {'sequential': {'<a>': {'gap_closed': 0.9, 'text_ratio': 1.0},
                             '<b>': {'gap_closed': 0.7, 'text_ratio': 0.96}},
              'packed_6': {'<a>': {'gap_closed': 0.88, 'text_ratio': 0.99},
                           '<b>': {'gap_closed': 0.8, 'text_ratio': 1.02}}}
    rows = cph.quality_rows(scores, ['sequential', 'packed_6'], ['<a>', '<b>'])
    assert [r['concept'] for r in rows] == ['<a>', '<b>', 'mean', 'worst']
    assert rows[2]['sequential']['gap_closed'] == pytest.approx(0.8)
    assert rows[3]['sequential'] == {'gap_closed': 0.7, 'text_ratio': 0.96}
    assert rows[3]['packed_6'] == {'gap_closed': 0.8, 'text_ratio': 0.99}
    text = cph.quality_markdown(rows, ['sequential', 'packed_6'])
    assert '| `<b>` | 70.0% | 80.0% | 96.0% | 102.0% |' in text
    assert text.splitlines()[-1] == '| worst | 70.0% | 80.0% | 96.0% | 99.0% |'

    runs = [{'round': 1, 'approach': 'sequential', 'wall_s': 600.0, 'cpu_s': 500.0,
             'load': {'loads': [1.5, 0.7], 'waited_s': 20}},
            {'round': 1, 'approach': 'packed_6', 'wall_s': 150.0, 'cpu_s': 100.0,
             'load': {'loads': [0.4], 'waited_s': 0}}]
    table = cph.timing_markdown(cph.summarize(runs, 6), runs)
    assert '| 1 | 600 | 150 | 4.00x | sequential 0.70 (waited 20 s), packed_6 0.40 |' in table
    assert '| concepts / hour | 36 | 144 |' in table
    assert '| CPU seconds | 500 | 100 | 5.00x | |' in table
    del runs[1]['cpu_s']  # a run without CPU time: no CPU row rather than a wrong one
    assert 'CPU seconds' not in cph.timing_markdown(cph.summarize(runs, 6), runs)


def test_steps_are_read_from_each_runs_own_record(tmp_path):
    single = tmp_path / 'sequential' / 'purple-dotted-star'
    single.mkdir(parents=True)
    (single / 'learning_signal.json').write_text(json.dumps(
        {'steps': [0, 10, 20], 'stopped': {'step': 20}}))
    assert cph.steps_taken('sequential', tmp_path / 'sequential', '<purple-dotted-star>') == 20
    (tmp_path / 'packed').mkdir()
    (tmp_path / 'packed' / 'concepts.json').write_text(json.dumps(
        {'tokens': ['<a>', '<b>'], 'queue': {'steps': [90, 70]}}))
    assert cph.steps_taken('packed_6', tmp_path / 'packed', '<b>') == 70
    assert cph.steps_taken('packed_6', tmp_path / 'nowhere', '<b>') is None


def test_bad_options_are_refused_before_anything_runs(capsys):
    for argv, message in ((['--rounds', '0'], '--rounds must be at least 1'),
                          (['--num-concepts', '13'], '--num-concepts must be 1 to 12'),
                          (['--lanes', '0'], '--lanes values must be at least 1'),
                          (['--num-samples', '0'], '--num-samples must be at least 1')):
        with pytest.raises(SystemExit):
            cph.parse_args(argv)
        assert message in capsys.readouterr().err


def test_scoring_a_saved_benchmark_needs_its_runs(tmp_path):
    with pytest.raises(SystemExit, match='does not exist; run the benchmark first'):
        cph.main(['--score-saved', '--out-dir', str(tmp_path)])
    (tmp_path / 'concepts_per_hour.json').write_text(json.dumps({'runs': []}))
    with pytest.raises(SystemExit, match='holds no finished run yet'):
        cph.main(['--score-saved', '--out-dir', str(tmp_path)])


@pytest.mark.slow  # four model loads and ~100 renders: over a minute even on a quiet machine
def test_a_tiny_real_benchmark_times_trains_and_scores_both_approaches(tmp_path):
    out = tmp_path / 'bench'
    result = cph.main(['--num-concepts', '2', '--max-steps', '10', '--rounds', '1',
                       '--lanes', '2', '--num-samples', '1', '--max-load', '1000',
                       '--out-dir', str(out)])
    tokens = ['<purple-dotted-star>', '<orange-striped-triangle>']
    assert [run['approach'] for run in result['runs']] == ['sequential', 'packed_2']
    for run in result['runs']:
        assert run['wall_s'] > 0 and sorted(run['embeddings']) == sorted(tokens)
        assert run['cpu_s'] > 0  # the children's CPU time, not this process's
        assert all(Path(path).is_file() for path in run['embeddings'].values())
        assert run['steps'] == {token: 10 for token in tokens}
    sequential, packed = result['runs']
    assert len(sequential['process_s']) == 2 and len(packed['process_s']) == 1
    for row in result['quality'][:2]:
        for approach in ('sequential', 'packed_2'):
            assert math.isfinite(row[approach]['gap_closed'])
            assert row[approach]['text_ratio'] > 0
    saved = json.loads((out / 'concepts_per_hour.json').read_text())
    assert saved['summary']['speedup']['packed_2'] == pytest.approx(
        sequential['wall_s'] / packed['wall_s'])
    assert '| median |' in (out / 'concepts_per_hour.md').read_text()
    with pytest.raises(SystemExit, match='already holds a benchmark'):
        cph.main(['--out-dir', str(out)])
