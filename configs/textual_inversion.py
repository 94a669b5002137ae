# Textual Inversion on Stable Diffusion 1.5: learn "<cat-toy>" from the images
# in data/cat_toy. Hyperparameters follow the paper / diffusers' example:
# AdamW 5e-4, batch 1, 3000 steps, 512 px, initialised from "toy".
default_scope = 'mmti'
custom_imports = dict(imports=['mmti.models', 'mmti.datasets', 'mmti.engine'],
                      allow_failed_imports=False)

pretrained_model = 'stable-diffusion-v1-5/stable-diffusion-v1-5'  # hub id or local folder
placeholder_token = '<cat-toy>'
resolution = 512
validation_prompts = [
    'a <cat-toy>',
    'a <cat-toy> bag',
    'a <cat-toy> on a sofa',
    'a <cat-toy> in a swimming pool',
]

model = dict(
    type='TextualInversion',
    pretrained_model=pretrained_model,
    placeholder_token=placeholder_token,
    initializer_token='toy',  # one existing word that roughly describes the concept
    num_vectors=1,
    dtype='fp16',  # frozen weights only; the learned rows and the loss stay fp32
    validation_prompts=validation_prompts,
    validation_cfg=dict(num_inference_steps=50, guidance_scale=7.5, seed=0))

train_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='SeededInfiniteSampler', shuffle=True),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(
        type='TextualInversionDataset',
        data_root='data/cat_toy',
        # placeholder_token: taken from model.placeholder_token (declared once)
        learnable_property='object',  # 'style' for a look rather than a thing
        repeats=100,
        pipeline=[
            dict(type='ResizeShorterSide', size=resolution),  # keep aspect, no stretching
            dict(type='CenterCrop', size=resolution),
            dict(type='RandomHorizontalFlip', prob=0.5),
            dict(type='PackInputs'),
        ]))

optim_wrapper = dict(
    type='OptimWrapper',
    constructor='TrainableParamsOptimWrapperConstructor',  # the new rows only
    # No weight decay: it would pull the learned rows towards zero.
    optimizer=dict(type='AdamW', lr=5e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0))
param_scheduler = dict(type='ConstantLR', factor=1.0, by_epoch=False)

train_cfg = dict(type='SeekingIterBasedTrainLoop', max_iters=3000)
val_cfg = None
val_dataloader = None
val_evaluator = None
test_cfg = None

default_hooks = dict(
    runtime_info=dict(type='BatchedRuntimeInfoHook'),
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # Checkpoints hold the learned rows and optimizer state only (KB).
    checkpoint=dict(type='AtomicCheckpointHook', interval=500, by_epoch=False, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'))
custom_hooks = [
    dict(type='NonFiniteLossHook'),  # stop at a NaN loss before anything is saved
    dict(type='EmbeddingSaveHook', interval=500),
    dict(type='ValidationSampleHook', interval=500),
]

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
