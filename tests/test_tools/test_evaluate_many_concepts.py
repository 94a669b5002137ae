"""tools/evaluate.py on a many-concept config: one row per concept, each measured
against its own training and held-out images, with its own initializer word."""
import json
import math

import pytest
import torch
from mmengine.config import Config
from mmti_testing import REPO_ROOT
from tool_runner import assert_quiet, run_tool

CONFIG = 'configs/textual_inversion_toy_concepts.py'


@pytest.fixture(scope='module')
def concepts():
    from mmti.datasets.concept_specs import check_concept_list
    # The config names a folder (relative to the repository): read it the same way.
    return check_concept_list(str(REPO_ROOT / Config.fromfile(str(REPO_ROOT / CONFIG)).model.concepts))


@pytest.fixture(scope='module')
def work_dir(tmp_path_factory, concepts):
    """A run's combined learned_embeds.safetensors: the config's model, each
    concept's rows moved its own way from the initializer's."""
    import mmti.models  # noqa: F401
    from mmti.registry import MODELS
    cfg = Config.fromfile(str(REPO_ROOT / CONFIG))
    cfg.model.concepts = concepts
    cfg.model.pretrained_model = str(REPO_ROOT / cfg.model.pretrained_model)
    model = MODELS.build(cfg.model)
    with torch.no_grad():
        for seed, concept in enumerate(concepts):
            rows = model.token_embedding.concept_rows(concept['placeholder_token'])
            rows.add_(0.1 * torch.randn(rows.shape, generator=torch.Generator().manual_seed(seed)))
    folder = tmp_path_factory.mktemp('run')
    model.save_embeddings(str(folder / 'learned_embeds.safetensors'))
    return folder


def test_every_concept_is_evaluated_on_its_own_images(work_dir, concepts, tmp_path):
    out = tmp_path / 'eval'
    result = run_tool('tools/evaluate.py', CONFIG, '--embeddings', str(work_dir),
                      '--num-samples', '1', '--steps', '1', '--out-dir', str(out))
    metrics = json.loads((out / 'metrics.json').read_text())
    table = metrics['concepts']
    assert [row['concept'] for row in table] == [c['placeholder_token'] for c in concepts]
    for row, concept in zip(table, concepts):
        # The tool reads the folder relative to the repository; the fixture absolute.
        assert REPO_ROOT / row['concept_dir'] == REPO_ROOT / concept['data_root']
        assert REPO_ROOT / row['held_out_dir'] == REPO_ROOT / concept['held_out_dir']
        assert row['initializer'] == concept['initializer_token']
        for key in ('image_similarity', 'text_similarity', 'initializer_image_similarity',
                    'initializer_text_similarity', 'image_only_image_similarity',
                    'image_only_text_similarity', 'gap_closed', 'text_ratio'):
            assert math.isfinite(row[key]), (row['concept'], key, row[key])
        assert row['verdict'].split(':')[0] in ('learned', 'partly learned', 'not learned')
        # Its reconstruction prompts are its own held-out captions (the config's
        # reconstruct_held_out_captions): 8 captions + 4 edit prompts, 1 sample each.
        assert len(row['reconstruction_prompt']) == 8
        assert row['rows']['learned']['num_images'] == 8 + 4
        assert (out / f"similarity_{concept['placeholder_token'].strip('<>')}.png").is_file()
    assert metrics['settings']['num_samples'] == 1 and metrics['settings']['clip'] == \
        'data/toy/clip_eval'  # the config's evaluation block

    # The "image only" row compares the concept's own held-out images with its own
    # training images: recomputed here, folder by folder, it is the row's number.
    from mmti.datasets.evaluation_inputs import load_images
    from mmti.evaluation import ClipScorer, image_similarity
    scorer = ClipScorer(str(REPO_ROOT / 'data/toy/clip_eval'))
    expected = []
    for concept in concepts:
        held_out = scorer.image_features(load_images(REPO_ROOT / concept['held_out_dir'], 'h'))
        training = scorer.image_features(load_images(REPO_ROOT / concept['data_root'], 't'))
        expected.append(image_similarity(held_out, training, same_set=False))
    measured = [row['image_only_image_similarity'] for row in table]
    assert measured == pytest.approx(expected, abs=1e-5)
    assert len({round(value, 4) for value in measured}) == len(concepts)  # three different pairs

    for concept in concepts:
        assert f"| {concept['placeholder_token']} |" in result.stdout
    assert '| concept | image similarity | text similarity |' in result.stdout
    assert_quiet(result)


@pytest.mark.parametrize('option', ['--held-out-dir', '--concept-dir', '--initializer'])
def test_shared_folders_are_refused_for_a_concept_list(option, work_dir, tmp_path):
    value = 'star' if option == '--initializer' else 'data/toy_concepts/purple-dotted-star/train'
    result = run_tool('tools/evaluate.py', CONFIG, '--embeddings', str(work_dir), option, value,
                      '--out-dir', str(tmp_path / 'o'), check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert 'lists 3 concepts' in lines[0] and f'drop {option}' in lines[0]
    assert not (tmp_path / 'o').exists()


def test_placeholder_picks_one_concept_of_the_list(work_dir, tmp_path):
    out = tmp_path / 'eval'
    run_tool('tools/evaluate.py', CONFIG, '--embeddings',
             str(work_dir / 'learned_embeds.safetensors'), '--placeholder',
             '<green-dotted-cross>', '--num-samples', '1', '--steps', '1',
             '--cfg-options', 'evaluation.reconstruct_held_out_captions=False',
             '--out-dir', str(out))
    table = json.loads((out / 'metrics.json').read_text())['concepts']
    assert [row['concept'] for row in table] == ['<green-dotted-cross>']
    # Without the held-out captions: the protocol's one reconstruction prompt + 4 edits.
    assert table[0]['rows']['learned']['num_images'] == 1 + 4
    assert table[0]['held_out_dir'] == 'data/toy_concepts/green-dotted-cross/held_out'
