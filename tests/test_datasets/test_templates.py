"""Caption templates: built-in lists, explicit lists/files, validation, filling."""
import re
from pathlib import Path

import pytest

from mmti.datasets.templates import fill_template, load_templates, read_template_file

REPO_TEMPLATES = Path(__file__).resolve().parents[2] / 'mmti' / 'datasets' / 'caption_templates'


def _file_lines(name):
    return [ln.strip() for ln in (REPO_TEMPLATES / name).read_text().splitlines() if ln.strip()]


def test_object_templates_are_the_27_of_object_txt():
    templates = load_templates('object')
    assert len(templates) == 27
    assert templates == _file_lines('object.txt')
    assert templates[0] == 'a photo of a {}'
    assert all('{}' in t for t in templates)
    assert all('style' not in t for t in templates)


def test_style_templates_are_the_19_of_style_txt():
    templates = load_templates('style')
    assert len(templates) == 19
    assert templates == _file_lines('style.txt')
    assert all(t.endswith('in the style of {}') for t in templates)
    # As in the paper's list, two lines are duplicated (17 distinct captions).
    assert len(set(templates)) == 17


def test_default_learnable_property_is_object():
    assert load_templates() == load_templates('object')


def test_explicit_list_overrides_learnable_property():
    given = ['a {} on a table', 'my {}']
    assert load_templates('style', given) == given
    # A typo in learnable_property is still caught when templates are given.
    with pytest.raises(ValueError, match="learnable_property must be one of .*'not-a-property'"):
        load_templates('not-a-property', given)


def test_a_single_inline_template_string():
    assert load_templates('object', 'a sketch of {}') == ['a sketch of {}']


def test_explicit_tuple_and_non_str_items_become_strings():
    class Tmpl:
        def __str__(self):
            return 'an object {}'

    assert load_templates(templates=('x {}', Tmpl())) == ['x {}', 'an object {}']


def test_explicit_list_is_copied():
    given = ['a {}']
    out = load_templates(templates=given)
    out.append('b {}')
    assert given == ['a {}']


@pytest.mark.parametrize('as_path', [True, False], ids=['Path', 'str'])
def test_template_file_path(tmp_path, as_path):
    f = tmp_path / 'mine.txt'
    f.write_text('  a toy {} \n\n\nthe {} on a shelf\n   \n', encoding='utf-8')
    templates = load_templates('object', f if as_path else str(f))
    assert templates == ['a toy {}', 'the {} on a shelf']


def test_template_file_utf8(tmp_path):
    f = tmp_path / 'utf8.txt'
    f.write_text('une photo de {} \u00e9t\u00e9\n', encoding='utf-8')
    assert load_templates(templates=f) == ['une photo de {} \u00e9t\u00e9']


def test_missing_template_file_names_the_path(tmp_path):
    missing = tmp_path / 'nope.txt'
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        load_templates(templates=missing)
    with pytest.raises(FileNotFoundError, match='does not exist'):
        read_template_file(missing)


def test_template_without_placeholder_is_rejected_and_named():
    with pytest.raises(ValueError, match=r'without "\{\}".*a photo of a cat'):
        load_templates(templates=['a photo of a {}', 'a photo of a cat'])


def test_template_with_only_other_braces_is_rejected():
    with pytest.raises(ValueError, match=r'without "\{\}"'):
        load_templates(templates=['a {0} photo', 'a {token} photo'])


def test_template_file_without_placeholder_is_rejected(tmp_path):
    f = tmp_path / 'bad.txt'
    f.write_text('a photo of {}\nno slot here\n')
    with pytest.raises(ValueError, match='no slot here'):
        load_templates(templates=f)


def test_empty_template_list_is_rejected():
    with pytest.raises(ValueError, match='No caption templates given'):
        load_templates(templates=[])


def test_blank_template_file_is_rejected(tmp_path):
    f = tmp_path / 'blank.txt'
    f.write_text('\n   \n\n')
    with pytest.raises(ValueError, match='No caption templates given'):
        load_templates(templates=f)


def test_unknown_learnable_property_message():
    with pytest.raises(ValueError,
                       match=r"learnable_property must be one of \['object', 'style'\], got 'person'"):
        load_templates('person')


def test_fill_template_substitutes_placeholder():
    assert fill_template('a photo of a {}', '<cat-toy>') == 'a photo of a <cat-toy>'


def test_fill_template_leaves_other_braces_alone():
    assert fill_template('a {} with {braces}', '<t>') == 'a <t> with {braces}'
    assert fill_template('{0} and {} and {{}}', 'X') == '{0} and X and {X}'


def test_fill_template_replaces_every_placeholder():
    assert fill_template('{} next to {}', 'S*') == 'S* next to S*'


def test_fill_template_token_with_braces_is_literal():
    assert fill_template('a photo of a {}', '{x}') == 'a photo of a {x}'
