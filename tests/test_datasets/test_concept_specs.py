"""The concept list of a many-concept config: one clear error per mistake,
and a per-concept seed that is a function of the run seed and the token alone."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmti.datasets.concept_specs import (ALL_KEYS, check_concept_list, concept_folder_name,
                                         concept_seed)

SPECS_FILE = Path(__file__).resolve().parents[2] / 'mmti' / 'datasets' / 'concept_specs.py'


def concept(token, **extra):
    return dict(placeholder_token=token, initializer_token='star', data_root='data/x', **extra)


def test_a_good_list_comes_back_as_plain_dicts_in_order():
    given = [concept('<a>', num_vectors=2), concept('<b>', learnable_property='style')]
    checked = check_concept_list(tuple(given))
    assert checked == given
    assert all(type(entry) is dict for entry in checked)
    checked[0]['num_vectors'] = 5  # a copy: the config's dicts are not changed
    assert given[0]['num_vectors'] == 2


@pytest.mark.parametrize('bad', [dict(placeholder_token='<a>'), [], None, 3])
def test_not_a_list_of_concepts_is_refused(bad):
    with pytest.raises(ValueError, match=r'model\.concepts must be a non-empty list of dicts'):
        check_concept_list(bad, 'model.concepts')


def test_a_string_is_a_folder_of_concepts(tmp_path):
    with pytest.raises(ValueError, match=r"concepts='<a>' is not a folder; give a folder with one "
                                         r'sub-folder per concept, or a list of dicts'):
        check_concept_list('<a>', 'model.concepts')


def test_an_entry_that_is_not_a_dict_is_refused():
    with pytest.raises(ValueError, match=r"concepts\[1\] is a str; each concept is a dict"):
        check_concept_list([concept('<a>'), '<b>'])


def test_unknown_key_is_named_with_the_keys_a_concept_takes():
    with pytest.raises(ValueError) as err:
        check_concept_list([concept('<a>'), concept('<b>', num_vector=2)], 'model.concepts')
    message = str(err.value)
    assert message.startswith("model.concepts[1] has unknown key 'num_vector'")
    assert all(key in message for key in ALL_KEYS)  # the fix: the keys it does take


def test_duplicate_token_names_both_entries():
    with pytest.raises(ValueError, match=r"concepts\[2\] and concepts\[0\] both use "
                                         r"placeholder_token '<a>'; give each concept its own"):
        check_concept_list([concept('<a>'), concept('<b>'), concept('<a>')])


@pytest.mark.parametrize('token', [None, '', '   ', 5])
def test_missing_or_empty_placeholder_token_is_refused(token):
    entry = concept('<b>')
    if token is None:
        del entry['placeholder_token']
    else:
        entry['placeholder_token'] = token
    with pytest.raises(ValueError, match=r"concepts\[1\] needs placeholder_token, the new word"):
        check_concept_list([concept('<a>'), entry])


def test_two_tokens_with_one_output_folder_are_refused():
    # '<red mug>' and '<red_mug>' are different words but both would write concepts/red_mug.
    assert concept_folder_name('<red mug>') == concept_folder_name('<red_mug>') == 'red_mug'
    with pytest.raises(ValueError, match=r"'<red mug>' and '<red_mug>' would share the output "
                                         r"folder concepts/red_mug; rename one"):
        check_concept_list([concept('<red mug>'), concept('<red_mug>')])


def test_folder_names_are_safe_path_components():
    assert concept_folder_name('<purple-dotted-star>') == 'purple-dotted-star'
    for token in ['<../../etc>', '<a/b>', '<..>', '<>']:
        name = concept_folder_name(token)
        assert name and '/' not in name and name not in ('.', '..'), (token, name)


def test_concept_seed_is_a_function_of_seed_and_token_only():
    seed = concept_seed(0, '<a>')
    assert seed == concept_seed(0, '<a>')
    assert 0 <= seed < 2**63
    assert len({concept_seed(0, '<a>'), concept_seed(1, '<a>'), concept_seed(0, '<b>'),
                concept_seed(0, '<a> ')}) == 4
    # Seeds of neighbouring runs are unrelated, not shifted copies.
    shift_a = concept_seed(1, '<a>') - concept_seed(0, '<a>')
    assert shift_a != concept_seed(1, '<b>') - concept_seed(0, '<b>')
    # Not Python's salted hash(): another interpreter with another hash seed agrees.
    # (The module is loaded by path so the child needs numpy only.)
    code = ('import importlib.util, sys\n'
            f'spec = importlib.util.spec_from_file_location("specs", {str(SPECS_FILE)!r})\n'
            'module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n'
            'print(module.concept_seed(7, "<purple-dotted-star>"))\n')
    child = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True,
                           env={**os.environ, 'PYTHONHASHSEED': '12345'})
    assert int(child.stdout) == concept_seed(7, '<purple-dotted-star>')
