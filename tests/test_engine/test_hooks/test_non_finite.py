"""The stop message of a diverged run names only files that are whole and finite."""
import pytest
import torch
from safetensors.torch import save_file

from mmti.engine import NonFiniteLossError
from mmti.engine.hooks.non_finite import all_finite, stop_message
from mmti.utils import UserError


def write_checkpoint(work_dir, step: int, value: float) -> None:
    path = work_dir / f'iter_{step}.pth'
    torch.save({'meta': {'iter': step}, 'state_dict': {'rows': torch.full((2, 4), value)}}, path)
    (work_dir / 'last_checkpoint').write_text(str(path))


def test_error_is_a_user_error():
    assert issubclass(NonFiniteLossError, UserError)
    assert issubclass(NonFiniteLossError, FloatingPointError)  # for code that caught it before


def test_all_finite():
    assert all_finite([torch.ones(3), torch.zeros(2, 2, dtype=torch.float16), torch.arange(3)])
    assert all_finite([torch.full((2,), 3e38)])  # large is not infinite
    assert not all_finite([torch.ones(3), torch.tensor([1.0, float('nan')])])
    assert not all_finite([torch.tensor([-float('inf')])])
    assert all_finite([])


def test_names_the_checkpoint_and_newest_good_snapshot(tmp_path):
    write_checkpoint(tmp_path, 4, 0.5)
    for step, value in ((2, 1.0), (4, 1.0), (6, float('inf')), (8, 1.0)):
        save_file({'<c>': torch.full((1, 4), value)}, tmp_path / f'learned_embeds-steps-{step}.safetensors')
    message = stop_message(tmp_path, 'Loss is nan at iteration 7', 6)
    assert message == (
        f'Loss is nan at iteration 7; training stopped without saving anything from it. Kept: '
        f'checkpoint {tmp_path}/iter_4.pth (iteration 4; last_checkpoint points at it), '
        f'learned_embeds-steps-4.safetensors (iteration 4). Fix: lower optim_wrapper.optimizer.lr '
        f"(or use model.dtype='fp32'), then --resume {tmp_path}/iter_4.pth.")
    assert '\n' not in message


def test_no_checkpoint_yet(tmp_path):
    message = stop_message(tmp_path, 'Loss is inf at iteration 1', 0)
    assert 'Kept: no checkpoint yet. Fix:' in message and message.endswith('and train again.')


def test_a_non_finite_or_broken_checkpoint_is_not_called_good(tmp_path):
    write_checkpoint(tmp_path, 4, float('nan'))  # e.g. written before this check existed
    message = stop_message(tmp_path, 'Loss is nan at iteration 5', 4)
    assert 'iter_4.pth: it is unreadable or not finite' in message
    assert 'Kept: no usable checkpoint' in message
    assert message.endswith('and train again.')
    (tmp_path / 'iter_4.pth').write_bytes(b'truncated')
    assert 'unreadable or not finite' in stop_message(tmp_path, 'x', 4)
    # An earlier, finite checkpoint beside it is named instead.
    write_checkpoint(tmp_path, 2, 0.5)
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_4.pth'))
    message = stop_message(tmp_path, 'x', 4)
    assert f'Kept: checkpoint {tmp_path}/iter_2.pth (iteration 2; not last_checkpoint' in message
    assert message.endswith(f'then --resume {tmp_path}/iter_2.pth.')


def test_the_checkpoint_whose_rows_gave_the_loss_is_not_called_good(tmp_path):
    # A NaN loss at iteration 5 comes from the rows after iteration 4: resuming iter_4.pth
    # replays the same batch on the same rows and meets it again, whatever the learning rate.
    write_checkpoint(tmp_path, 2, 0.5)
    write_checkpoint(tmp_path, 4, 1e30)  # finite, but the rows that diverged
    message = stop_message(tmp_path, 'Loss is nan at iteration 5', 3)
    assert (f'Kept: checkpoint {tmp_path}/iter_2.pth (iteration 2; not last_checkpoint\'s '
            f'{tmp_path}/iter_4.pth: it holds the rows of iteration 4, which gave the non-finite '
            'values)') in message
    assert message.endswith(f'then --resume {tmp_path}/iter_2.pth.')
    (tmp_path / 'iter_2.pth').unlink()
    message = stop_message(tmp_path, 'Loss is nan at iteration 5', 3)
    assert 'Kept: no usable checkpoint' in message and message.endswith('and train again.')


def test_finite_rows_blown_far_past_the_words_are_not_called_good(tmp_path):
    write_checkpoint(tmp_path, 2, 0.5)   # rows of norm 1: a place to resume from
    write_checkpoint(tmp_path, 4, 1e19)  # finite, but ruined on the way to a NaN
    message = stop_message(tmp_path, 'Loss is nan at iteration 6', 4, row_limit=30.0)
    assert f'Kept: checkpoint {tmp_path}/iter_2.pth (iteration 2; not last_checkpoint' in message
    assert 'its rows are unreadable, not finite or blown up' in message
    assert message.endswith(f'then --resume {tmp_path}/iter_2.pth.')
    # Without a limit (a caller that cannot know the words' scale) finite is enough.
    assert message != stop_message(tmp_path, 'Loss is nan at iteration 6', 4)


def test_the_limit_is_a_hundred_times_the_longest_word():
    from types import SimpleNamespace
    from mmti.engine.hooks.non_finite_loss_hook import SANE_ROW_FACTOR, sane_row_limit
    from mmti_testing import build_tiny_model
    model = build_tiny_model()
    words = model.token_embedding.base.weight[:model.token_embedding.first_new_id]
    expected = SANE_ROW_FACTOR * float(words.norm(dim=-1).max())
    assert sane_row_limit(SimpleNamespace(model=model)) == pytest.approx(expected)
    # The learned rows start at a word's norm: far inside it.
    assert float(model.token_embedding.concept_rows('<cat-toy>').norm(dim=-1).max()) < expected / 50
