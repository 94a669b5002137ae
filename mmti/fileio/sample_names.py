"""File names of sampled images, shared by tools/infer.py and its readers."""
import re


def prompt_slug(prompt: str, limit: int = 60) -> str:
    """The prompt as a safe file-name part: runs of other characters become '_'."""
    return re.sub(r'[^a-zA-Z0-9]+', '_', prompt).strip('_')[:limit] or 'prompt'


def sample_filename(prompt: str, seed: int, index: int) -> str:
    """E.g. ``a_cat_toy_bag_seed0_1.png``: image ``index`` of ``prompt`` at ``seed``."""
    return f'{prompt_slug(prompt)}_seed{seed}_{index}.png'
