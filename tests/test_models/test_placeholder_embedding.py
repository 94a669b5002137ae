import torch
from torch import nn

from mmti.models import PlaceholderEmbedding


def make_table(vocab: int = 10, dim: int = 4) -> PlaceholderEmbedding:
    base = nn.Embedding(vocab, dim)
    with torch.no_grad():
        base.weight.copy_(torch.arange(vocab * dim, dtype=torch.float32).view(vocab, dim))
    return PlaceholderEmbedding(base, first_new_id=vocab)


def test_lookup_swaps_in_concept_rows_without_touching_the_rest():
    table = make_table()
    table.add_concept('<a>', torch.full((2, 4), -1.0), trainable=True)
    table.add_concept('<b>', torch.full((1, 4), -2.0), trainable=False)
    ids = torch.tensor([[3, 10, 11, 12, 0], [12, 9, 10, 1, 1]])
    out = table(ids)
    assert out.shape == (2, 5, 4)
    assert torch.equal(out[0, 0], table.base.weight[3])
    assert torch.equal(out[0, 1], torch.full((4,), -1.0))
    assert torch.equal(out[0, 3], torch.full((4,), -2.0))
    assert torch.equal(out[1, 1], table.base.weight[9])
    assert table.num_embeddings == 13 and table.concept_id_range('<b>') == range(12, 13)


def test_gradient_reaches_only_trainable_rows():
    table = make_table()
    table.add_concept('<a>', torch.zeros(2, 4), trainable=True)
    table.add_concept('<b>', torch.zeros(1, 4), trainable=False)
    table(torch.tensor([[1, 10, 11, 12]])).sum().backward()
    assert table.base.weight.grad is None
    assert torch.equal(table.concept_rows('<a>').grad, torch.ones(2, 4))
    assert table.concept_rows('<b>').grad is None
    assert list(table.trainable_rows()) == [table.concept_rows('<a>')]


def test_rows_stay_fp32_with_a_half_precision_table():
    base = nn.Embedding(10, 4).half()
    table = PlaceholderEmbedding(base, first_new_id=10)
    table.add_concept('<a>', torch.randn(1, 4), trainable=True)
    assert table.concept_rows('<a>').dtype == torch.float32
    assert table(torch.tensor([[1, 10]])).dtype == torch.float16


def test_full_table_and_removal():
    table = make_table()
    original = table.full_table().clone()
    table.add_concept('<a>', torch.ones(3, 4), trainable=True)
    assert torch.equal(table.full_table()[:10], original)
    assert table.full_table().shape == (13, 4)
    table.add_concept('<b>', torch.full((1, 4), 2.0), trainable=False)
    table.remove_concept('<a>')
    assert table.concepts == ['<b>'] and table.concept_id_range('<b>') == range(10, 11)
    assert torch.equal(table(torch.tensor([[10]]))[0, 0], torch.full((4,), 2.0))
    table.remove_concept('<b>')
    assert torch.equal(table.full_table(), original) and table.concepts == []


def test_wrong_row_width_is_refused():
    table = make_table()
    try:
        table.add_concept('<a>', torch.ones(1, 5), trainable=True)
    except ValueError as err:
        assert 'needs [num_vectors, 4]' in str(err)
    else:
        raise AssertionError('expected a ValueError')
