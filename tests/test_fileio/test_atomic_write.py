"""atomic_write: readers see the old file or the new one, never half of one."""
import os
from pathlib import Path

import pytest

from mmti.fileio import atomic_write


def temp_files(folder: Path, name: str) -> list[Path]:
    return sorted(folder.glob(f'.{name}.*.tmp'))


@pytest.fixture
def umask():
    """Set the process umask for one test and put the old one back."""
    saved = os.umask(0o022)
    os.umask(saved)

    def set_umask(value: int) -> None:
        os.umask(value)

    yield set_umask
    os.umask(saved)


def test_target_appears_only_after_the_body(tmp_path):
    target = tmp_path / 'out.bin'
    with atomic_write(target) as tmp:
        assert tmp.parent == tmp_path  # same folder: the rename cannot cross filesystems
        assert tmp != target and tmp.name.startswith('.out.bin.') and tmp.name.endswith('.tmp')
        tmp.write_bytes(b'new content')
        assert not target.exists()
        assert temp_files(tmp_path, 'out.bin') == [tmp]
    assert target.read_bytes() == b'new content'
    assert temp_files(tmp_path, 'out.bin') == []


def test_existing_file_keeps_old_content_while_body_runs(tmp_path):
    target = tmp_path / 'out.bin'
    target.write_bytes(b'old')
    with atomic_write(target) as tmp:
        tmp.write_bytes(b'new, longer content')
        assert target.read_bytes() == b'old'
    assert target.read_bytes() == b'new, longer content'


@pytest.mark.parametrize('error', [RuntimeError('disk on fire'), KeyboardInterrupt()])
def test_error_in_body_leaves_old_file_and_no_temp(tmp_path, error):
    target = tmp_path / 'weights.safetensors'
    old = bytes(range(256)) * 8
    target.write_bytes(old)
    os.chmod(target, 0o640)
    before = target.stat()
    with pytest.raises(type(error)):
        with atomic_write(target) as tmp:
            tmp.write_bytes(b'half of the new')
            raise error
    assert target.read_bytes() == old
    after = target.stat()
    assert (after.st_ino, after.st_mode, after.st_mtime_ns) == (before.st_ino, before.st_mode,
                                                                before.st_mtime_ns)
    assert temp_files(tmp_path, 'weights.safetensors') == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ['weights.safetensors']


def test_error_before_anything_exists_creates_nothing(tmp_path):
    target = tmp_path / 'new.txt'
    with pytest.raises(ValueError):
        with atomic_write(target) as tmp:
            tmp.write_text('partial')
            raise ValueError
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize('mask, mode', [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_final_file_gets_umask_permissions(tmp_path, umask, mask, mode):
    umask(mask)
    target = tmp_path / 'out.txt'
    with atomic_write(target) as tmp:
        tmp.write_text('x')
    assert target.stat().st_mode & 0o777 == mode
    # The same as a file made by open(): mkstemp's private 0o600 does not leak.
    plain = tmp_path / 'plain.txt'
    plain.write_text('x')
    assert plain.stat().st_mode & 0o777 == mode


def test_replacing_a_file_applies_umask_not_old_mode(tmp_path, umask):
    umask(0o022)
    target = tmp_path / 'out.txt'
    target.write_text('old')
    os.chmod(target, 0o600)
    with atomic_write(target) as tmp:
        tmp.write_text('new')
    assert target.read_text() == 'new'
    assert target.stat().st_mode & 0o777 == 0o644


def test_creates_parent_folders(tmp_path):
    target = tmp_path / 'a' / 'b' / 'c' / 'out.txt'
    with atomic_write(str(target)) as tmp:  # str paths work too
        assert tmp.parent == target.parent and tmp.parent.is_dir()
        tmp.write_text('deep')
    assert target.read_text() == 'deep'
    assert [p.name for p in target.parent.iterdir()] == ['out.txt']
