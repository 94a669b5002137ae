# The SD 1.5 recipe on Stable Diffusion 2.1 at its native 768 px. Its
# OpenCLIP-H text encoder is 1024-d and it predicts velocity; the loss reads
# the prediction type from the scheduler config, so only these lines change.
_base_ = ['./textual_inversion.py']

model = dict(pretrained_model='stabilityai/stable-diffusion-2-1')

train_dataloader = dict(dataset=dict(resolution=768))
