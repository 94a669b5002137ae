# What the toy-world pretraining configs (clip.py, vae.py, sd.py) share:
# batches of freshly rendered captioned scenes (held-out concepts excluded, so
# Textual Inversion can learn them later), an iteration-based loop, and the
# runtime around it. Each config sets the model, optimizer, schedule, batch
# size, image size, caption dropout and its export hooks.
default_scope = 'mmti'
# The project registers its three pretraining models and its dataset.
custom_imports = dict(
    imports=['mmti.models', 'mmti.datasets', 'mmti.engine', 'projects.toy_world.models',
             'projects.toy_world.datasets'],
    allow_failed_imports=False)

train_dataloader = dict(
    batch_size=32,
    num_workers=0,  # rendering is cheap; workers would compete for the 2 cores
    persistent_workers=False,
    pin_memory=False,
    sampler=dict(type='SeededInfiniteSampler', shuffle=True),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(
        type='ToyWorldDataset',
        length=100000,
        seed=0,
        exclude_held_out=True))

val_cfg = None
val_dataloader = None
val_evaluator = None
test_cfg = None

default_hooks = dict(
    runtime_info=dict(type='BatchedRuntimeInfoHook'),
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='AtomicCheckpointHook', interval=1000, by_epoch=False, max_keep_ckpts=2),
    sampler_seed=dict(type='DistSamplerSeedHook'))

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'))  # tools/train.py switches to gloo without a GPU
randomness = dict(seed=0, deterministic=False)
visualizer = dict(type='Visualizer', vis_backends=[dict(type='LocalVisBackend')])
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
