"""A folder of concepts (concepts='data/concepts'): one sub-folder + concept.json each."""
import json
import shutil

import pytest
from mmti_testing import REPO_ROOT

from mmti.datasets.concept_specs import check_concept_list

TOY = REPO_ROOT / 'data' / 'toy_concepts'


def make_folder(tmp_path, names=('red-mug', 'blue-lamp'), **extra):
    root = tmp_path / 'concepts'
    for name in names:
        folder = root / name
        shutil.copytree(TOY / 'purple-dotted-star' / 'train', folder)
        (folder / 'concept.json').write_text(json.dumps({'initializer_token': 'star', **extra}))
    return root


def test_each_sub_folder_is_a_concept_named_after_it(tmp_path):
    root = make_folder(tmp_path, num_vectors=2)
    (root / '.hidden').mkdir()
    concepts = check_concept_list(str(root))
    assert [c['placeholder_token'] for c in concepts] == ['<blue-lamp>', '<red-mug>']  # name order
    assert concepts[0]['data_root'] == str(root / 'blue-lamp')
    assert concepts[0]['initializer_token'] == 'star' and concepts[0]['num_vectors'] == 2


def test_the_shipped_toy_folder_gives_the_single_concept_recipe():
    concepts = check_concept_list(str(TOY))
    star = next(c for c in concepts if c['placeholder_token'] == '<purple-dotted-star>')
    # data_root and held_out_dir in concept.json are relative to the sub-folder.
    assert star['data_root'] == str(TOY / 'purple-dotted-star' / 'train')
    assert star['held_out_dir'] == str(TOY / 'purple-dotted-star' / 'held_out')
    assert star['initializer_token'] == 'star' and star['num_vectors'] == 2 and star['caption_files']


def test_the_model_and_dataset_train_the_folder(tmp_path):
    from mmti.datasets import ConceptListDataset
    root = make_folder(tmp_path)
    dataset = ConceptListDataset(str(root), resolution=32, seed=0)
    assert dataset.tokens == ['<blue-lamp>', '<red-mug>']
    assert '<red-mug>' in dataset[1, 0]['captions']


@pytest.mark.parametrize('damage, pattern', [
    (lambda f: (f / 'concept.json').unlink(), r'concept\.json is missing; write one'),
    (lambda f: (f / 'concept.json').write_text('{initializer'), r'is not valid JSON'),
    (lambda f: (f / 'concept.json').write_text('["mug"]'), r'holds a list; write one object'),
    (lambda f: (f / 'concept.json').write_text('{"initialiser_token": "mug"}'),
     r"unknown key 'initialiser_token'"),
    (lambda f: f.rename(f.parent / 'red mug'), r'cannot hold spaces; rename the folder \(e\.g\. red-mug\)'),
])
def test_a_bad_concept_folder_is_named(tmp_path, damage, pattern):
    root = make_folder(tmp_path)
    damage(root / 'red-mug')
    with pytest.raises(ValueError, match=pattern):
        check_concept_list(str(root))


def test_not_a_folder_or_an_empty_one_is_refused(tmp_path):
    with pytest.raises(ValueError, match='is not a folder'):
        check_concept_list(str(tmp_path / 'nothing'))
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ValueError, match='has no sub-folders'):
        check_concept_list(str(tmp_path / 'empty'))
