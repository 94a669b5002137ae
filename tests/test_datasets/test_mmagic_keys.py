"""mmagic's dataset keys are answered with one line naming mmti's key."""
import pytest
from tool_runner import TINY_CONFIG, run_tool

from mmti.datasets import TextualInversionDataset
from mmti_testing import CAT_TOY


@pytest.mark.parametrize('key, value, names', [
    ('concept_dir', 'cat_toy', "data_root='data/cat_toy'"),
    ('placeholder', '<cat-toy>', "model.placeholder_token='<cat-toy>'"),
    ('template', 'data/imagenet_templates_small.txt',
     "templates='data/imagenet_templates_small.txt'"),
    ('with_image_reference', False, 'drop it'),
])
def test_each_mmagic_key_names_the_mmti_key(key, value, names):
    with pytest.raises(ValueError, match="mmagic's key") as info:
        TextualInversionDataset('data', '<cat-toy>', resolution=8, **{key: value})
    message = str(info.value)
    assert names in message and '\n' not in message


def test_train_answers_concept_dir_with_one_line_and_writes_nothing(tmp_path):
    work_dir = tmp_path / 'run'
    result = run_tool('tools/train.py', TINY_CONFIG, '--work-dir', str(work_dir),
                      '--cfg-options', f'train_dataloader.dataset.data_root={CAT_TOY.parent}',
                      'train_dataloader.dataset.concept_dir=cat_toy', check=False)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if 'error:' in line]
    assert len(errors) == 1 and 'Traceback' not in result.stderr
    assert f"set data_root='{CAT_TOY}'" in errors[0]
    assert not work_dir.exists()
