"""tools/dev/clip_guided_rows.py on the toy world: the guide's score of a
fixed draw rises, only the concept's rows are written (loadable by mmti),
and the learned file is never the output."""
import re

import pytest
import torch
from mmengine.config import Config
from safetensors.torch import load_file

from mmti.registry import MODELS
from tool_runner import run_tool

TOY = 'configs/textual_inversion_toy.py'


@pytest.fixture(scope='module')
def start(tmp_path_factory):
    """The toy config's rows before training (the initializer's), as a file."""
    import mmti.models  # noqa: F401
    model = MODELS.build(Config.fromfile(TOY).model)
    return model.save_embeddings(str(tmp_path_factory.mktemp('start') / 'start.safetensors'))


def test_the_guide_score_rises_and_only_the_rows_are_written(start, tmp_path):
    out = tmp_path / 'guided.safetensors'
    result = run_tool('tools/dev/clip_guided_rows.py', TOY, '--embeddings', start,
                      '--clip', 'data/toy/clip', '--out', str(out), '--steps', '4',
                      '--renders', '6', '--denoising-steps', '10', timeout=600)
    before, after = map(float, re.search(r'([\d.]+) before, ([\d.]+) after',
                                         result.stdout).groups())
    assert after > before + 0.01, result.stdout
    tuned, learned = load_file(str(out)), load_file(start)
    assert list(tuned) == list(learned) == ['<purple-dotted-star>']
    assert tuned['<purple-dotted-star>'].shape == learned['<purple-dotted-star>'].shape
    assert not torch.equal(tuned['<purple-dotted-star>'], learned['<purple-dotted-star>'])
    assert len(re.findall(r'step \d+/4: guide similarity', result.stdout)) == 4
    import mmti.models  # noqa: F401
    model = MODELS.build(Config.fromfile(TOY).model)
    assert model.load_embeddings(str(out)) == ['<purple-dotted-star>']


def test_refuses_to_write_over_the_learned_rows(start):
    before = open(start, 'rb').read()
    result = run_tool('tools/dev/clip_guided_rows.py', TOY, '--embeddings', start,
                      '--clip', 'data/toy/clip', '--out', start, check=False)
    assert result.returncode != 0
    assert 'is the --embeddings file' in result.stderr
    assert open(start, 'rb').read() == before


def test_refuses_many_concept_and_sdxl_configs(start, tmp_path):
    for config, words in (('configs/textual_inversion_toy_concepts.py', 'several concepts'),
                          ('configs/textual_inversion_sdxl.py', 'SDXL')):
        result = run_tool('tools/dev/clip_guided_rows.py', config, '--embeddings', start,
                          '--clip', 'data/toy/clip', '--out', str(tmp_path / 'x.safetensors'),
                          check=False)
        assert result.returncode != 0 and words in result.stderr, result.stderr
        assert not (tmp_path / 'x.safetensors').exists()


def test_a_missing_guide_is_one_line(start, tmp_path):
    result = run_tool('tools/dev/clip_guided_rows.py', TOY, '--embeddings', start,
                      '--clip', str(tmp_path / 'no-clip'), '--out', str(tmp_path / 'x.safetensors'),
                      check=False)
    assert result.returncode != 0
    assert 'cannot load the guiding CLIP' in result.stderr and 'Traceback' not in result.stderr
    assert not (tmp_path / 'x.safetensors').exists()
