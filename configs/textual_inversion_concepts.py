# Many concepts on Stable Diffusion 1.5 in one run: every sub-folder of
# data/concepts is one concept (data/concepts/red-mug/ learns <red-mug>),
# holding its 3-5 images and a concept.json such as
#     {"initializer_token": "mug"}
# (any key of a concept: num_vectors, learnable_property "style", templates,
# caption_files ...). Each concept gets the single-concept recipe of
# configs/textual_inversion.py (AdamW 5e-4, batch 1, its own automatic stop,
# at most 3000 steps), four concepts per step; a finished concept's place
# goes to the next one waiting. See docs/many_concepts.md.
_base_ = ['./textual_inversion.py']

concepts = 'data/concepts'

model = dict(
    _delete_=True,
    type='TextualInversion',
    pretrained_model='stable-diffusion-v1-5/stable-diffusion-v1-5',
    dtype='fp16',
    concepts=concepts,
    validation_prompts=['a {}', 'a {} on a sofa'],
    validation_cfg=dict(num_inference_steps=50, guidance_scale=7.5, seed=0))

train_dataloader = dict(
    batch_size=1,  # of each concept
    num_workers=0,  # the queue is read at every step: nothing may fetch ahead
    persistent_workers=False,
    batch_sampler=dict(type='ConceptBatchSampler', concepts_per_batch=4),
    dataset=dict(_delete_=True, type='ConceptListDataset', concepts=concepts, resolution=512))

model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=True)

# A concept trains at most 3000 of its own steps; the run at most enough
# for three waves of four concepts that never stop early.
train_cfg = dict(max_iters=9000)
default_hooks = dict(
    learning_signal=None,
    concept_queue=dict(type='ConceptQueueHook', interval=25, num_samples=16,
                       stop=dict(window=250, min_drop=0.02), max_steps=3000),
    validation_samples=None)
