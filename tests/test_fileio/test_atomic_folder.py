"""atomic_folder: a folder is replaced whole or not at all, with usual permissions."""
import os
import stat

import pytest

from mmti.fileio import atomic_folder


def test_replaces_the_old_folder_and_leaves_nothing_beside_it(tmp_path):
    target = tmp_path / 'export'
    target.mkdir()
    (target / 'old.txt').write_text('old')
    with atomic_folder(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        (tmp / 'new.txt').write_text('new')
        (tmp / 'sub').mkdir()
    assert sorted(p.name for p in target.iterdir()) == ['new.txt', 'sub']
    assert [p.name for p in tmp_path.iterdir()] == ['export']


def test_an_error_inside_keeps_the_old_folder_byte_for_byte(tmp_path):
    target = tmp_path / 'export'
    target.mkdir()
    (target / 'weights.bin').write_bytes(b'good')
    with pytest.raises(RuntimeError, match='disk full'):
        with atomic_folder(target) as tmp:
            (tmp / 'weights.bin').write_bytes(b'half')
            raise RuntimeError('disk full')
    assert (target / 'weights.bin').read_bytes() == b'good'
    assert [p.name for p in tmp_path.iterdir()] == ['export']


def test_result_has_the_usual_permissions_not_mkdtemps_private_ones(tmp_path):
    old_umask = os.umask(0o022)
    try:
        with atomic_folder(tmp_path / 'out') as tmp:
            (tmp / 'a.json').write_text('{}')
            (tmp / 'nested').mkdir(mode=0o700)
    finally:
        os.umask(old_umask)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(tmp_path / 'out') == 0o755
    assert mode(tmp_path / 'out' / 'nested') == 0o755
    assert mode(tmp_path / 'out' / 'a.json') == 0o644
