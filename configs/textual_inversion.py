# Textual Inversion on Stable Diffusion 1.5: learn "<cat-toy>" from the images
# in data/cat_toy, initialised from "toy", with the paper's / diffusers'
# hyperparameters (AdamW 5e-4, batch 1, 3000 steps, 512 px).
_base_ = [
    './_base_/models/sd15.py', './_base_/datasets/concept_folder.py',
    './_base_/schedules/adamw_3000.py', './_base_/default_runtime.py'
]

placeholder_token = '<cat-toy>'

model = dict(
    placeholder_token=placeholder_token,
    initializer_token='toy',  # one existing word that roughly describes the concept
    num_vectors=1,
    validation_prompts=[
        'a {}',
        'a {} bag',
        'a {} on a sofa',
        'a {} in a swimming pool',
    ])

# Stop when the concept is learned: every 25 steps the loss on a fixed batch
# (16 samples: the images, each with fixed timesteps and noise) is measured;
# when its mean over the last 250 steps is within 2% of its total drop of the
# 250 steps before, training ends and learned_embeds.safetensors is written.
# max_iters stays the cap. default_hooks.learning_signal.stop=None trains all
# max_iters steps. The fixed samples go through the UNet 8 at a time: one at a
# time, the signal would cost a third of the training time. Why these numbers:
# docs/fast_concepts.md.
default_hooks = dict(
    learning_signal=dict(interval=25, num_samples=16, batch_size=8,
                         stop=dict(window=250, min_drop=0.02)))
