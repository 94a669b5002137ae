"""ConceptQueueHook(evaluate=...): each concept, when done, is measured as
tools/evaluate.py measures it, and the summary table carries the numbers."""
import json
import math
import re

import pytest
from mmengine.config import Config
from mmti_testing import REPO_ROOT
from tool_runner import run_tool

from mmti.engine.hooks.concept_evaluation import ConceptEvaluator

CONFIG = 'configs/textual_inversion_toy_concepts.py'
FEW = ['--num-samples', '1', '--steps', '2']


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    """The toy concepts, 2 steps each, evaluated with 1 sample of 2 steps per prompt."""
    work_dir = tmp_path_factory.mktemp('concepts')
    # The shipped config has evaluate=False; a dict in its place needs _delete_.
    config = work_dir.parent / f'{work_dir.name}_config.py'
    config.write_text(f"_base_ = [{str(REPO_ROOT / CONFIG)!r}]\n"
                      "default_hooks = dict(concept_queue=dict(\n"
                      "    max_steps=2, stop=None, evaluate=dict(_delete_=True, num_samples=1, steps=2)))\n")
    run_tool('tools/train.py', str(config), '--work-dir', str(work_dir), '--cfg-options',
             'model.validation_cfg.num_inference_steps=2', timeout=600)
    return work_dir


def test_summary_rows_carry_the_similarity_tools_evaluate_gives(run, tmp_path):
    from mmti.datasets.concept_specs import check_concept_list
    folder = REPO_ROOT / Config.fromfile(str(REPO_ROOT / CONFIG)).concepts
    tokens = [c['placeholder_token'] for c in check_concept_list(str(folder))]
    stops = json.loads((run / 'concepts.json').read_text())['stops']
    numbers = {token: stops[token]['similarity'] for token in tokens}
    for token, values in numbers.items():
        assert sorted(values) == ['gap_closed', 'image_similarity', 'text_ratio',
                                  'text_similarity']
        assert all(math.isfinite(v) for v in values.values()), (token, values)

    summary = (run / 'concepts.md').read_text().splitlines()
    assert summary[0].endswith('| image_similarity | text_similarity | gap_closed | text_ratio |')
    for token in tokens:
        line = next(line for line in summary if line.startswith(f'| {token} |'))
        cells = [cell.strip() for cell in line.strip('|').split('|')]
        assert cells[-4:] == [f"{numbers[token]['image_similarity']:.4f}",
                              f"{numbers[token]['text_similarity']:.4f}",
                              f"{numbers[token]['gap_closed']:.0%}",
                              f"{numbers[token]['text_ratio']:.0%}"]

    # Same protocol, same settings, same rows: tools/evaluate.py's numbers.
    out = tmp_path / 'eval'
    run_tool('tools/evaluate.py', CONFIG, '--embeddings', str(run), *FEW, '--out-dir', str(out))
    table = json.loads((out / 'metrics.json').read_text())['concepts']
    for row in table:
        for key, value in numbers[row['concept']].items():
            assert value == pytest.approx(row[key], abs=1e-4), (row['concept'], key)


@pytest.mark.parametrize('evaluation, overrides, expected', [
    (dict(clip='data/toy/clip_eval', held_out_dir='x'), {}, 'evaluation.held_out_dir is set'),
    (dict(clip='data/toy/clip_eval'), dict(num_sample=1), "unknown evaluation settings"),
    (dict(clip='data/nowhere'), {}, 'is not a local CLIP model folder'),
    (dict(clip='data/toy/clip_eval', reconstruct_held_out_captions=True), {},
     'needs held_out_dir in every concept; concepts[1] (<b>) has none'),
])
def test_evaluator_refuses_settings_it_cannot_use(evaluation, overrides, expected, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    concepts = [dict(placeholder_token='<a>', data_root='d', held_out_dir='h'),
                dict(placeholder_token='<b>', data_root='d')]
    with pytest.raises(ValueError, match=re.escape(expected)):
        ConceptEvaluator(evaluation, overrides, concepts)
