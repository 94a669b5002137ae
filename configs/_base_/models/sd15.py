# Stable Diffusion 1.5: every component from one hub id or local folder.
model = dict(
    type='TextualInversion',
    pretrained_model='stable-diffusion-v1-5/stable-diffusion-v1-5',
    dtype='fp16',  # frozen weights only; the learned rows and the loss stay fp32
    validation_cfg=dict(num_inference_steps=50, guidance_scale=7.5, seed=0))
