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


def test_temp_name_carries_the_pid_and_is_unique(tmp_path):
    target = tmp_path / 'out.bin'
    with atomic_write(target) as first, atomic_write(target) as second:
        assert first != second  # mkstemp creates each name exclusively
        for tmp in (first, second):
            assert tmp.name.startswith(f'.out.bin.{os.getpid()}.') and tmp.name.endswith('.tmp')
        first.write_bytes(b'1')
        second.write_bytes(b'2')
    assert target.read_bytes() == b'1'  # the first body finished last: its rename wins
    assert temp_files(tmp_path, 'out.bin') == []


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


def test_remove_stale_temps_only_removes_files_of_dead_writers(tmp_path):
    from mmti.fileio.atomic_write import remove_stale_temps
    dead = dead_pid()
    stale = [tmp_path / f'.iter_4.pth.{dead}.abc_12.tmp', tmp_path / f'.last_checkpoint.{dead}.x9.tmp']
    alive = [tmp_path / f'.iter_6.pth.{os.getpid()}.abc.tmp',  # this process: still writing
             tmp_path / f'.iter_8.pth.1.abc.tmp']  # pid 1 (init) is always alive
    others = [tmp_path / 'iter_4.pth', tmp_path / f'.iter_4.pth.{dead}.partial',
              tmp_path / f'notes.{dead}.abc.tmp']
    for path in stale + alive + others:
        path.write_bytes(b'x')
    assert remove_stale_temps(tmp_path, 'last_*') == [stale[1]]
    assert sorted(remove_stale_temps(tmp_path)) == [stale[0]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in alive + others)
    assert remove_stale_temps(tmp_path / 'missing') == []
