# The runtime every mmti recipe shares. mmti's own hooks sit in default_hooks
# beside mmengine's, by name, so a recipe or --cfg-options can say
# default_hooks.embedding_save.interval=100 instead of a list position.
default_scope = 'mmti'
custom_imports = dict(imports=['mmti.models', 'mmti.datasets', 'mmti.engine'],
                      allow_failed_imports=False)

default_hooks = dict(
    runtime_info=dict(type='BatchedRuntimeInfoHook'),
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # Checkpoints hold the learned rows and optimizer state only (KB).
    checkpoint=dict(type='AtomicCheckpointHook', interval=500, by_epoch=False, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    non_finite=dict(type='NonFiniteLossHook'),  # stop at NaN/inf before anything is saved
    embedding_save=dict(type='EmbeddingSaveHook', interval=500),  # learned_embeds*.safetensors
    validation_samples=dict(type='ValidationSampleHook', interval=500),  # samples/step_N.png
    # Loss on a fixed batch every `interval` steps (learning_signal.json); with
    # stop=dict(...) it ends training when the concept is learned.
    learning_signal=dict(type='LearningSignalHook', interval=10, num_samples=16),
    # With an `evaluation` block: the concept's image and text similarity at
    # the start, every `interval` steps and at the end (similarity.json).
    similarity=dict(type='SimilarityCurveHook', interval=0, overrides=dict(num_samples=2)),
    curves=dict(type='CurvesHook'),  # curves.png, at every checkpoint and at the end
    progress=dict(type='ProgressBarHook'))  # one bar with ETA on stderr (rank 0)
custom_hooks = []

val_cfg = None
val_dataloader = None
val_evaluator = None
test_cfg = None

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'))  # build_runner switches to gloo without a GPU
randomness = dict(seed=0, deterministic=False)
visualizer = dict(type='Visualizer', vis_backends=[dict(type='LocalVisBackend')])
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
