"""mmti's registries: children of mmengine's roots, so configs can mix both.

Every registry looks up `mmti.<package>` lazily (``locations``) so that a config
with ``default_scope='mmti'`` finds our classes without importing them first.
"""
from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, locations=['mmti.models'])
DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, locations=['mmti.datasets'])
DATA_SAMPLERS = Registry(
    'data sampler', parent=MMENGINE_DATA_SAMPLERS, locations=['mmti.datasets'])
TRANSFORMS = Registry(
    'transform', parent=MMENGINE_TRANSFORMS, locations=['mmti.datasets.transforms'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, locations=['mmti.engine.hooks'])
LOOPS = Registry('loop', parent=MMENGINE_LOOPS, locations=['mmti.engine'])
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor',
    parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
    locations=['mmti.engine'])
VISUALIZERS = Registry('visualizer', parent=MMENGINE_VISUALIZERS, locations=['mmti.engine'])
