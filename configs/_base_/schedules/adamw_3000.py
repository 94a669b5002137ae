# The paper's / diffusers' schedule: AdamW 5e-4, constant, 3000 steps.
optim_wrapper = dict(
    type='OptimWrapper',
    constructor='TrainableParamsOptimWrapperConstructor',  # the new rows only
    # No weight decay: it would pull the learned rows towards zero.
    optimizer=dict(type='AdamW', lr=5e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0))
param_scheduler = dict(type='ConstantLR', factor=1.0, by_epoch=False)
train_cfg = dict(type='SeekingIterBasedTrainLoop', max_iters=3000)
