# Learn a *style* rather than an object: captions come from the paper's 19
# style templates ("a painting in the style of {}"), initialised from "painting".
_base_ = ['./textual_inversion.py']

placeholder_token = '<my-style>'

model = dict(
    placeholder_token=placeholder_token,
    initializer_token='painting',
    validation_prompts=[
        'a painting in the style of {}',
        'a cat in the style of {}',
        'a city street in the style of {}',
    ])

train_dataloader = dict(dataset=dict(
    data_root='data/cat_toy',  # replace with a folder of images in your style
    learnable_property='style'))
