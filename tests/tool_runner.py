import importlib.util
import os
import subprocess
import sys

from mmti_testing import REPO_ROOT

TINY_CONFIG = str(REPO_ROOT / 'configs' / 'textual_inversion_tiny.py')


def run_tool(*args: str, timeout: int = 300, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command from the repo root, offline, as a user would."""
    env = dict(os.environ, HF_HUB_OFFLINE='1', OMP_NUM_THREADS='1')
    cmd = list(args)
    if cmd[0].endswith('.py'):
        cmd = [sys.executable, *cmd]
    result = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f'{cmd} failed ({result.returncode}):\n{result.stderr[-4000:]}')
    return result


def load_tool(name: str):
    """Import tools/<name>.py as a module (for in-process calls of main())."""
    spec = importlib.util.spec_from_file_location(f'tools_{name}', REPO_ROOT / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
