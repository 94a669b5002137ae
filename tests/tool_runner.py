import importlib.util
import os
import subprocess
import sys

from mmti_testing import REPO_ROOT

TINY_CONFIG = str(REPO_ROOT / 'configs' / 'textual_inversion_tiny.py')
# What no tool's console shows at the default log level (the log file keeps mmengine's):
# mmengine's start-up dumps and deprecation notices, transformers' backend notices and the
# libraries' weight-loading bars, and mmengine's resume chatter on a run with nothing to resume.
CONSOLE_NOISE = ('Hooks will be executed in the following order', '"FileClient" will be deprecated',
                 '"HardDiskBackend" is the alias', 'requires torchvision', 'System environment:',
                 'Loading weights', 'Did not find last_checkpoint', 'Auto resumed from')


def assert_quiet(result: subprocess.CompletedProcess) -> None:
    """The finished tool's console holds none of :data:`CONSOLE_NOISE`."""
    console = result.stdout + result.stderr
    for noise in CONSOLE_NOISE:
        assert noise not in console, f'{noise!r} on the console:\n{console[-3000:]}'


def concept_folder_lines(result: subprocess.CompletedProcess) -> list[str]:
    """The "Concept folder X: using N images" lines the tool printed, folder by folder."""
    return [line.split(' - INFO - ', 1)[-1].split(':')[0]
            for line in (result.stdout + result.stderr).splitlines() if 'Concept folder ' in line]


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
