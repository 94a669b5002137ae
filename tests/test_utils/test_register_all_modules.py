"""``import mmti`` is enough to build from a config; ``register_all_modules`` fills registries."""
import os
import subprocess
import sys

from mmti_testing import REPO_ROOT


def _python(code: str) -> str:
    """Run ``code`` in a fresh interpreter (registries and scope start empty)."""
    env = dict(os.environ, HF_HUB_OFFLINE='1', OMP_NUM_THREADS='1')
    result = subprocess.run([sys.executable, '-c', code], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_import_mmti_alone_builds_the_model_from_a_config():
    out = _python(
        'import sys, mmti\n'
        'from mmengine.config import Config\n'
        'from mmti.registry import MODELS\n'
        "assert 'mmti.models' not in sys.modules  # import mmti stays light\n"
        "cfg = Config.fromfile('configs/textual_inversion_tiny.py')\n"
        'print(type(MODELS.build(cfg.model)).__name__)\n')
    assert out.split()[-1] == 'TextualInversion'


def test_register_all_modules_fills_registries_and_sets_the_scope():
    out = _python(
        'from mmengine.registry import DefaultScope, MODELS as ROOT_MODELS\n'
        'from mmti.registry import DATASETS, HOOKS, MODELS\n'
        'from mmti.utils import register_all_modules\n'
        'assert DefaultScope.get_current_instance() is None\n'
        'register_all_modules()\n'
        'print(DefaultScope.get_current_instance().scope_name)\n'
        "print('TextualInversion' in MODELS.module_dict, "
        "'TextualInversionDataset' in DATASETS.module_dict, "
        "'EmbeddingSaveHook' in HOOKS.module_dict)\n"
        # Through mmengine's root registry, as its build() resolves a bare name.
        'with ROOT_MODELS.switch_scope_and_registry(None) as registry:\n'
        "    print(registry.get('TextualInversion').__name__)\n")
    assert out.split() == ['mmti', 'True', 'True', 'True', 'TextualInversion']


def test_register_all_modules_keeps_another_toolboxs_scope():
    out = _python(
        'from mmengine.registry import DefaultScope\n'
        'from mmti.utils import register_all_modules\n'
        "DefaultScope.get_instance('other', scope_name='mmengine')\n"
        'register_all_modules()\n'
        'print(DefaultScope.get_current_instance().scope_name)\n')
    assert out.split() == ['mmengine']
