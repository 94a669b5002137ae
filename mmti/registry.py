"""mmti's registries: children of mmengine's roots, so configs can mix both.

With ``default_scope='mmti'`` a config finds our classes by name, and every
mmengine class (optimizers, schedulers, hooks ...) through the parent. Each
registry that holds our own classes imports its package lazily
(``locations``), so a config need not import mmti first.
"""
from mmengine import registry as mmengine_registry
from mmengine.registry import Registry


def _child(name: str, parent: Registry, locations: list[str] | None = None) -> Registry:
    return Registry(name, parent=parent, scope='mmti', locations=locations or [])


RUNNERS = _child('runner', mmengine_registry.RUNNERS)
RUNNER_CONSTRUCTORS = _child('runner constructor', mmengine_registry.RUNNER_CONSTRUCTORS)
LOOPS = _child('loop', mmengine_registry.LOOPS, ['mmti.engine'])
HOOKS = _child('hook', mmengine_registry.HOOKS, ['mmti.engine.hooks'])
DATASETS = _child('dataset', mmengine_registry.DATASETS, ['mmti.datasets'])
DATA_SAMPLERS = _child('data sampler', mmengine_registry.DATA_SAMPLERS, ['mmti.datasets'])
TRANSFORMS = _child('transform', mmengine_registry.TRANSFORMS, ['mmti.datasets.transforms'])
MODELS = _child('model', mmengine_registry.MODELS, ['mmti.models'])
MODEL_WRAPPERS = _child('model_wrapper', mmengine_registry.MODEL_WRAPPERS)
WEIGHT_INITIALIZERS = _child('weight initializer', mmengine_registry.WEIGHT_INITIALIZERS)
OPTIMIZERS = _child('optimizer', mmengine_registry.OPTIMIZERS)
OPTIM_WRAPPERS = _child('optim_wrapper', mmengine_registry.OPTIM_WRAPPERS)
OPTIM_WRAPPER_CONSTRUCTORS = _child('optimizer wrapper constructor',
                                    mmengine_registry.OPTIM_WRAPPER_CONSTRUCTORS,
                                    ['mmti.engine.optim'])
PARAM_SCHEDULERS = _child('parameter scheduler', mmengine_registry.PARAM_SCHEDULERS)
METRICS = _child('metric', mmengine_registry.METRICS)
EVALUATOR = _child('evaluator', mmengine_registry.EVALUATOR)
VISUALIZERS = _child('visualizer', mmengine_registry.VISUALIZERS)
VISBACKENDS = _child('vis_backend', mmengine_registry.VISBACKENDS)
LOG_PROCESSORS = _child('log_processor', mmengine_registry.LOG_PROCESSORS)
FUNCTIONS = _child('function', mmengine_registry.FUNCTIONS)
