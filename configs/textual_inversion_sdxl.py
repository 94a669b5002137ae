# Textual Inversion on SDXL 1.0 (1024 px, bf16 frozen weights): the new word
# gets rows in both text encoders (CLIP-L 768-d and OpenCLIP-bigG 1280-d) and
# is saved as one {"clip_l", "clip_g"} file, the layout A1111/ComfyUI read.
_base_ = ['./textual_inversion.py']

pretrained_model = 'stabilityai/stable-diffusion-xl-base-1.0'
resolution = 1024

model = dict(
    type='TextualInversionXL',
    pretrained_model=pretrained_model,
    dtype='bf16',  # SDXL's VAE overflows in fp16
    validation_cfg=dict(height=resolution, width=resolution, guidance_scale=5.0))

train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='ResizeShorterSide', size=resolution),
    dict(type='CenterCrop', size=resolution),  # the crop corner goes into SDXL's time ids
    dict(type='RandomHorizontalFlip', prob=0.5),
    dict(type='PackInputs'),
]))
