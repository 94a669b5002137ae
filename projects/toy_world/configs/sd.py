# Pretrain the UNet of a toy Stable Diffusion on the synthetic toy world, on
# the frozen toy VAE (data/toy/vae, made by projects/toy_world/configs/vae.py) and the frozen
# text tower of the toy CLIP (data/toy/clip, made by projects/toy_world/configs/clip.py;
# CLIPTextModel loads its text tower from the CLIPModel folder):
#
#     python tools/train.py projects/toy_world/configs/sd.py     # -> work_dirs/toy_sd/export
#
# The export is a complete diffusers Stable Diffusion folder (DDIM sampler on
# the training schedule, no safety checker) that StableDiffusionPipeline and
# mmti's TextualInversion load: pretrained_model='work_dirs/toy_sd/export'.
# Captions are padded to 77 tokens, exactly as Textual Inversion encodes them.
# This is stage 1: its samples get backgrounds and colours wrong (measured in
# data/toy/README.md); projects/toy_world/configs/sd_zero_snr.py and then
# projects/toy_world/configs/sd_partial_captions.py fine-tune it into the committed
# data/toy/sd.
#
# Speed: a 20-step run of this config through tools/train.py (UNet 1.69 M
# parameters, a 64-d 3-layer CLIPTextModel, the vae.py VAE) measured 0.26 s
# per step (batch 32, data 0.02 s of it) on 2 idle CPU cores, so
# max_iters = 13000 is about 56 minutes of steps, 60 with checkpoints and
# exports (0.56-0.68 s per step were seen while another job shared the cores).
_base_ = ['./_base_/pretraining.py']

work_dir = 'work_dirs/toy_sd'
image_size = 32
max_iters = 13000
warmup_iters = 200

model = dict(
    type='DiffusionPretraining',
    vae='data/toy/vae',
    text_encoder='data/toy/clip',  # CLIPModel folder: CLIPTextModel takes the text tower
    image_size=image_size,  # UNet sample_size = 32 / VAE factor 2 = 16
    unet_config=dict(
        # in/out_channels and cross_attention_dim come from the VAE and the
        # text encoder.
        block_out_channels=(32, 64, 64),  # 16, 8 and 4 px latents
        layers_per_block=1,
        down_block_types=('DownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D'),
        up_block_types=('CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'UpBlock2D'),
        attention_head_dim=4,  # diffusers: number of heads
        norm_num_groups=32),
    # SD 1.x's schedule: TextualInversion's defaults then match it exactly.
    scheduler_config=dict(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule='scaled_linear',
        prediction_type='epsilon'),
    inference_scheduler='DDIMScheduler')

train_dataloader = dict(
    batch_size=32,
    dataset=dict(
        size=image_size,
        caption_dropout=0.1))  # empty captions train the unconditional branch (CFG)

optim_wrapper = dict(
    type='OptimWrapper',
    constructor='TrainableParamsOptimWrapperConstructor',  # the UNet only
    optimizer=dict(type='AdamW', lr=5e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01),
    clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='CosineAnnealingLR', eta_min=5e-5, by_epoch=False, begin=warmup_iters,
         end=max_iters, T_max=max_iters - warmup_iters),
]

train_cfg = dict(type='SeekingIterBasedTrainLoop', max_iters=max_iters)

default_hooks = dict(
    # Checkpoints hold the UNet and optimizer state; VAE and text encoder are
    # reloaded from their folders.
    checkpoint=dict(interval=2000))
custom_hooks = [
    dict(type='NonFiniteLossHook'),  # stop at a NaN loss before anything is saved
    dict(type='ExportHook', interval=1000, subdir='export'),
]
