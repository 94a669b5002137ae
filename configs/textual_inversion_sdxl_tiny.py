# The SDXL recipe on the bundled tiny SDXL folder (data/tiny-sdxl, random
# weights) at 64 px: exercises both text encoders, pooled embeddings and time
# ids on a CPU in about a minute.
_base_ = ['./textual_inversion_sdxl.py']

pretrained_model = 'data/tiny-sdxl'
resolution = 64

model = dict(
    pretrained_model=pretrained_model,
    dtype='fp32',
    validation_cfg=dict(num_inference_steps=10, height=resolution, width=resolution, seed=0))

train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    pin_memory=False,
    dataset=dict(pipeline=[
        dict(type='ResizeShorterSide', size=resolution),
        dict(type='CenterCrop', size=resolution),
        dict(type='RandomHorizontalFlip', prob=0.5),
        dict(type='PackInputs'),
    ]))

train_cfg = dict(max_iters=200)
default_hooks = dict(logger=dict(interval=20), checkpoint=dict(interval=100))
custom_hooks = [
    dict(type='NonFiniteLossHook'),
    dict(type='EmbeddingSaveHook', interval=100),
    dict(type='ValidationSampleHook', interval=100),
]
