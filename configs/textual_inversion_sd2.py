# Textual Inversion on Stable Diffusion 2.1 (768 px). Its OpenCLIP-H text
# encoder is 1024-d and its scheduler predicts velocity; the loss reads the
# prediction type from the scheduler config, so only the sizes change here.
_base_ = ['./textual_inversion.py']

pretrained_model = 'stabilityai/stable-diffusion-2-1'
resolution = 768

model = dict(
    pretrained_model=pretrained_model,
    validation_cfg=dict(height=resolution, width=resolution))

train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='ResizeShorterSide', size=resolution),
    dict(type='CenterCrop', size=resolution),
    dict(type='RandomHorizontalFlip', prob=0.5),
    dict(type='PackInputs'),
]))
