# A folder of 3-5 images of one concept, captioned from templates. The
# placeholder token comes from model.placeholder_token (declared once).
train_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='SeededInfiniteSampler', shuffle=True),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(
        type='TextualInversionDataset',
        data_root='data/cat_toy',
        learnable_property='object',  # 'style' for a look rather than a thing
        repeats=100,
        resolution=512))  # shorter side resized (no stretching), centre crop, flip 0.5
