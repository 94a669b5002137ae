# Pretrain a toy CLIP on the synthetic toy world (projects/toy_world/world/): its text
# tower becomes the text encoder of the toy Stable Diffusion, so it keeps the
# real CLIP tokenizer and SD's 77 positions. The held-out concepts are never
# shown, so Textual Inversion can learn them later.
#
#     python tools/train.py projects/toy_world/configs/clip.py
#
# Writes work_dirs/toy_clip/export (CLIPModel + tokenizer, model_max_length 77)
# and work_dirs/toy_clip/export_text (its text tower, the toy SD's text encoder).
# Speed: a 20-step run with these settings (batch 64, 64 px, fp32, torch 2.13)
# took 4.5 s on 2 idle CPU cores: 0.20 s/step (4.9 steps/s), of which ~0.10 s
# is rendering the batch. max_iters=6000 is about 20 minutes there (a run
# measured 2-5x slower while another job shared the cores).
_base_ = ['./_base_/pretraining.py']
work_dir = 'work_dirs/toy_clip'

tokenizer = 'data/tiny-sd/tokenizer'  # the real CLIP BPE tokenizer (vocab 49408)
image_size = 64
max_iters = 6000
warmup_iters = 200

model = dict(
    type='ContrastiveCLIP',
    tokenizer=tokenizer,
    text_config=dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                     intermediate_size=256),
    vision_config=dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                       intermediate_size=256, patch_size=8, image_size=image_size),
    projection_dim=64,
    max_length=16,  # toy captions are <= 14 tokens with bos/eos; SD still pads to 77
    init_seed=0)

train_dataloader = dict(
    batch_size=64,
    dataset=dict(
        size=image_size,
        caption_dropout=0.0))  # every image needs its caption for the contrastive loss

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=5e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01),
    # No decay on norms, biases or the temperature (decay would pull it to 1).
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0,
                       custom_keys={'logit_scale': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='CosineAnnealingLR', eta_min=5e-6, by_epoch=False, begin=warmup_iters,
         end=max_iters, T_max=max_iters - warmup_iters),
]

train_cfg = dict(type='SeekingIterBasedTrainLoop', max_iters=max_iters)

custom_hooks = [
    dict(type='NonFiniteLossHook'),  # stop at a NaN loss before anything is saved
    dict(type='ExportHook', interval=1000, subdir='export'),
    dict(type='ExportHook', interval=1000, subdir='export_text', method='export_text_encoder'),
]
