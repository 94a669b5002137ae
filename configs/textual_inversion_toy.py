# Textual Inversion on the toy world (projects/toy_world): learn
# <purple-dotted-star>, a shape/colour/pattern combination the toy Stable
# Diffusion (data/toy/sd) never saw in pretraining, from the 5 images in
# data/toy_concepts/purple-dotted-star/train. Minutes on 2 CPU cores; the
# Quick start demo (tools/demo.py) runs it, samples and evaluates it:
#
#     python tools/train.py configs/textual_inversion_toy.py
#     python tools/evaluate.py configs/textual_inversion_toy.py \
#         --embeddings work_dirs/textual_inversion_toy/learned_embeds.safetensors
#
# Each training image has a caption file saying everything that is *not* the
# concept ("a small {} on the left on a blue background"), so the learned row
# takes the colour, pattern and shape and nothing else.
_base_ = ['./textual_inversion.py']

placeholder_token = '<purple-dotted-star>'

model = dict(
    dtype='fp32',  # CPU: half precision is slower, not faster
    pretrained_model='data/toy/sd',
    placeholder_token=placeholder_token,
    initializer_token='star',  # the shape: colour and pattern are left to learn
    num_vectors=2,  # two rows learn more of the concept, and more steadily (docs/fast_concepts.md)
    # Train at the 800 least noisy of the 1000 timesteps: the rest are almost
    # pure noise, and leaving them out gave closer likenesses (same doc).
    train_timesteps=(0, 800),
    validation_prompts=[
        'a large {} in the center on a white background',
        'a small {} on the left on a black background',
    ],
    # Mild guidance: a model this small over-saturates at SD's usual 7.5.
    validation_cfg=dict(num_inference_steps=25, guidance_scale=1.5))

train_dataloader = dict(
    batch_size=8,
    num_workers=0,  # workers would compete for the CPU cores
    persistent_workers=False,
    pin_memory=False,
    dataset=dict(
        data_root='data/toy_concepts/purple-dotted-star/train',
        caption_files=True,
        resolution=32,
        flip_prob=0.0))  # the captions say "on the left" / "on the right"

optim_wrapper = dict(optimizer=dict(lr=5e-3))
train_cfg = dict(max_iters=600)
default_hooks = dict(
    logger=dict(interval=50),
    # The toy concept is learned in tens of steps: measure and judge sooner.
    learning_signal=dict(interval=10, stop=dict(window=30, min_drop=0.02)),
    similarity=dict(interval=30),  # the evaluation block below, 2 samples a prompt: curves.png
    checkpoint=dict(interval=300),
    embedding_save=dict(interval=300),
    validation_samples=dict(interval=300))

# Defaults of tools/evaluate.py for this config: the toy world's evaluation
# CLIP (data/toy/clip_eval: its image features are mostly about the object,
# as a real CLIP's are; the toy CLIP's weigh background and position more, see
# projects/toy_world/configs/clip_eval.py), toy-world prompts (the toy model knows no "photo"
# or "beach"), the held-out images. Reconstruction renders the held-out
# images' own captions ("a large {} at the top on a white background", ...),
# so the learned, initializer and "image only" rows show the same scenes and
# differ only in how the object is drawn. The edit prompts ask for other
# sizes, places and backgrounds.
evaluation = dict(
    clip='data/toy/clip_eval',
    held_out_dir='{data_root}/../held_out',  # beside whichever concept folder trains
    num_samples=8,
    steps=25,
    guidance_scale=1.5,
    reconstruct_held_out_captions=True,
    edit_prompts=[
        'a small {} on the left on a black background',
        'a large {} at the top on a gray background',
        'a small {} on the right on a white background',
        'a large {} at the bottom on a black background',
    ])
