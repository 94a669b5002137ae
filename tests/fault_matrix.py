"""Shared checks of the bad-input and fault matrix (one test file per entry point).

Every case asserts the same three things: the exit status, a one-line
message that names the problem, and that every file already in the work dir
(or output folder) is byte-identical afterwards.
"""
import hashlib
import re
from pathlib import Path

from mmti.utils import USAGE_ERROR


def snapshot(folder) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``folder`` (empty if absent)."""
    root = Path(folder)
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob('*')) if p.is_file()}


def assert_kept(before: dict[str, str], folder) -> None:
    """Every file in ``before`` still exists with the same bytes."""
    after = snapshot(folder)
    changed = {name for name, digest in before.items() if after.get(name) != digest}
    assert not changed, f'files changed or lost: {sorted(changed)}'


def assert_refused(code, stderr: str, prog: str, pattern: str, status: int = USAGE_ERROR) -> str:
    """Exit ``status``, no traceback, and the last stderr line is ``prog: error: ...``
    matching ``pattern`` (a regex searched in that line). Returns the line."""
    assert code == status, f'exit status {code}, expected {status}; stderr:\n{stderr[-3000:]}'
    assert 'Traceback' not in stderr, stderr[-3000:]
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert lines, 'nothing on stderr'
    last = lines[-1]
    assert last.startswith(f'{prog}: '), last
    assert re.search(pattern, last), f'{pattern!r} not in {last!r}'
    return last


def deny_writes(monkeypatch, module_os, folder) -> None:
    """Make ``module_os.access`` answer "not writable" for ``folder``, as it would
    for an ordinary user of a 0o500 folder (tests run as root, which ignores
    permission bits)."""
    real_access = module_os.access
    monkeypatch.setattr(module_os, 'access',
                        lambda p, mode: False if str(p) == str(folder) else real_access(p, mode))
