# The same recipe on the bundled tiny model (data/tiny-sd, random weights,
# real CLIP tokenizer) at 64 px: a complete run takes about a minute on 2 CPU
# cores. For tests and demos of the machinery, not for pretty pictures.
_base_ = ['./textual_inversion.py']

model = dict(
    dtype='fp32',  # CPU: half precision is slower, not faster
    pretrained_model='data/tiny-sd',
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
