# The SDXL recipe on the bundled tiny SDXL folder (data/tiny-sdxl, random
# weights) at 64 px: exercises both text encoders, pooled embeddings and time
# ids on a CPU in about a minute.
_base_ = ['./textual_inversion_sdxl.py']

model = dict(
    dtype='fp32',  # CPU: half precision is slower, not faster
    pretrained_model='data/tiny-sdxl',
    validation_cfg=dict(num_inference_steps=10))

train_dataloader = dict(
    batch_size=4,
    num_workers=0,  # workers would compete for the CPU cores
    persistent_workers=False,
    pin_memory=False,
    dataset=dict(resolution=64))

train_cfg = dict(max_iters=200)
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=100),
    embedding_save=dict(interval=100),
    validation_samples=dict(interval=100))
