# Many concepts in one run, on the toy world: the three held-out concepts of
# data/toy_concepts, each with the single-concept toy recipe
# (configs/textual_inversion_toy.py: 2 rows, AdamW 5e-3, 8 images a step,
# its own automatic stop), trained side by side in one packed batch.
#
#     python tools/train.py configs/textual_inversion_toy_concepts.py
#
# Each concept stops on its own learning signal; its place in the batch goes
# to the next concept waiting in the list (concepts_per_batch at a time).
# Outputs: work_dirs/textual_inversion_toy_concepts/concepts/<name>/ (one
# embedding file, sample grid and curves per concept), learned_embeds.safetensors
# (all of them, for mmti), concepts.md (the summary table).
_base_ = ['./textual_inversion_toy.py']


def toy_concept(name: str, initializer: str) -> dict:
    return dict(placeholder_token=f'<{name}>', initializer_token=initializer, num_vectors=2,
                data_root=f'data/toy_concepts/{name}/train',
                held_out_dir=f'data/toy_concepts/{name}/held_out')


concepts = [
    toy_concept('purple-dotted-star', 'star'),
    toy_concept('orange-striped-triangle', 'triangle'),
    toy_concept('green-dotted-cross', 'cross'),
]

model = dict(
    _delete_=True,
    type='TextualInversion',
    pretrained_model='data/toy/sd',
    dtype='fp32',
    concepts=concepts,
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
        caption_files=True,
        resolution=32,
        flip_prob=0.0))

# A batch that holds some concepts and not others leaves the others' rows
# without a gradient; DDP must be told (tools/dist_train.sh).
model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=True)

# Each concept at most 600 of its own steps; the run at most as many steps
# as the queue can need.
train_cfg = dict(max_iters=600 * 1)
default_hooks = dict(
    learning_signal=None,
    # evaluate: each concept, when done, is measured as tools/evaluate.py does
    # (the evaluation block below, 1 sample a prompt: ~7 s a toy concept on the CPU,
    # 8 samples ~55 s) and its similarities join concepts.md.
    concept_queue=dict(type='ConceptQueueHook', interval=10, num_samples=16,
                       stop=dict(window=30, min_drop=0.02), max_steps=600,
                       evaluate=dict(num_samples=1)),
    validation_samples=None)  # each concept's own grid is drawn when it is done

# tools/evaluate.py evaluates every concept of the list with the single-concept
# toy protocol (configs/textual_inversion_toy.py's block); each concept brings
# its own held_out_dir and initializer word, so the block has neither.
evaluation = dict(
    _delete_=True,
    clip='data/toy/clip_eval',
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
