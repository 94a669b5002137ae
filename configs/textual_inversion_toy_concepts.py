# Many concepts in one run, on the toy world: the three held-out concepts of
# data/toy_concepts, each with the single-concept toy recipe
# (configs/textual_inversion_toy.py: 2 rows, timesteps 0-799, AdamW 5e-3,
# 8 images a step, its own automatic stop), trained side by side in one
# packed batch.
#
#     python tools/train.py configs/textual_inversion_toy_concepts.py
#
# Each concept stops on its own learning signal; its place in the batch goes
# to the next concept waiting in the list (concepts_per_batch at a time).
# Outputs: work_dirs/textual_inversion_toy_concepts/concepts/<name>/ (one
# embedding file, sample grid and curves per concept), learned_embeds.safetensors
# (all of them, for mmti), concepts.md (the summary table).
_base_ = ['./textual_inversion_toy.py']


# A folder of concepts: one sub-folder each, named after its token
# (purple-dotted-star/ is <purple-dotted-star>), with a concept.json saying
# what the single-concept config says (initializer word, 2 rows, where the
# training and held-out images are). A list of dicts works too:
#     concepts = [dict(placeholder_token='<red-mug>', initializer_token='mug',
#                      data_root='data/red_mug'), ...]
concepts = 'data/toy_concepts'

model = dict(
    _delete_=True,
    type='TextualInversion',
    pretrained_model='data/toy/sd',
    dtype='fp32',
    concepts=concepts,
    train_timesteps=(0, 800),
    validation_prompts=[
        'a large {} in the center on a white background',
        'a small {} on the left on a black background',
    ],
    validation_cfg=dict(num_inference_steps=25, guidance_scale=1.5, seed=0))

train_dataloader = dict(
    batch_size=8,  # of each concept: the single-concept recipe's batch
    sampler=dict(type='SeededInfiniteSampler', shuffle=True),
    batch_sampler=dict(type='ConceptBatchSampler', concepts_per_batch=3),
    dataset=dict(
        _delete_=True,
        type='ConceptListDataset',
        concepts=concepts,
        resolution=32,
        flip_prob=0.0))

# A batch that holds some concepts and not others leaves the others' rows
# without a gradient; DDP must be told (tools/dist_train.sh).
model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=True)

# Each concept trains at most max_steps of its own steps (it usually stops
# itself in about 100); the run at most max_iters, enough for three waves
# of concepts through the lanes.
train_cfg = dict(max_iters=1800)
default_hooks = dict(
    learning_signal=None,
    similarity=None,  # the queue measures each concept when it stops (evaluate=...)
    # evaluate=True (or dict(num_samples=1): ~7 s a toy concept on 2 CPU cores;
    # the block's 8 samples ~55 s) measures each concept when it is done, as
    # tools/evaluate.py does, and adds its similarities to concepts.md.
    concept_queue=dict(type='ConceptQueueHook', interval=10, num_samples=16,
                       stop=dict(window=30, min_drop=0.02), max_steps=600, evaluate=False),
    validation_samples=None)  # each concept's own grid is drawn when it is done

# tools/evaluate.py evaluates every concept of the list with the single-concept
# toy protocol (the evaluation block of configs/textual_inversion_toy.py); each
# concept brings its own held-out images and initializer word.
evaluation = dict(held_out_dir=None)
