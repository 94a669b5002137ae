"""OpenMMLab's ``register_all_modules``: fill mmti's registries in one call."""
import importlib

# The subpackages whose import registers mmti's classes (models, datasets and
# transforms, loops, hooks, optimizer constructors).
REGISTERING_PACKAGES = ('mmti.models', 'mmti.datasets', 'mmti.engine')


def register_all_modules(init_default_scope: bool = True) -> None:
    """Import every mmti module that registers a class, and set the scope.

    mmti's registries already import their package on first use (their
    ``locations``), so ``import mmti`` is enough for ``MODELS.build(cfg)``;
    this is for code that looks the registries up by hand, or builds through
    mmengine's root registries, and expects them filled.

    Args:
        init_default_scope: Make ``'mmti'`` the default scope when none is
            set, so configs' bare type names (``type='TextualInversion'``)
            resolve through mmengine's root registries too. A scope another
            toolbox already set is left as it is (mmti names then resolve
            as ``'mmti.TextualInversion'``).
    """
    from mmengine.registry import DefaultScope  # here: mmti.utils stays light to import
    for name in REGISTERING_PACKAGES:
        importlib.import_module(name)
    if init_default_scope and DefaultScope.get_current_instance() is None:
        DefaultScope.get_instance('mmti', scope_name='mmti')
