# The SD 1.5 recipe on SDXL 1.0 at its native 1024 px: the new word gets rows
# in both text encoders (CLIP-L 768-d, OpenCLIP-bigG 1280-d) and is saved as
# one {"clip_l", "clip_g"} file, the layout A1111/ComfyUI read; the crop
# corner and original size go into SDXL's time ids.
_base_ = ['./textual_inversion.py']

model = dict(
    type='TextualInversionXL',
    pretrained_model='stabilityai/stable-diffusion-xl-base-1.0',
    dtype='bf16',  # SDXL's VAE overflows in fp16
    validation_cfg=dict(guidance_scale=5.0))

train_dataloader = dict(dataset=dict(resolution=1024))

# At 1024 px eight samples per forward pass may need more memory than a
# training step (not measured): the learning signal keeps the training batch.
default_hooks = dict(learning_signal=dict(batch_size=None))
