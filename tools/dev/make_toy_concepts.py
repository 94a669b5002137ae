"""Write the held-out toy-world concepts as Textual Inversion image folders.

For each of ``projects.toy_world.world.HELD_OUT_CONCEPTS`` this writes::

    <out>/<name>/train/0.png ... 4.png      (images to learn the concept from)
    <out>/<name>/*/<i>.txt                  (each image's caption, the concept as {})
    <out>/<name>/held_out/0.png ... 7.png   (other views of it, for evaluation)
    <out>/<name>/concept.json               (its initializer word, for many-concept configs)

plus ``<out>/README.md``. The images are a pure function of ``--seed`` and
``--size``. The folder is built next to ``<out>`` and renamed into place, so
an interrupted run leaves either the old folder or the new one.

Usage::

    python tools/dev/make_toy_concepts.py [--out data/toy_concepts] [--seed 0] [--force]
"""
import argparse
import json
import sys
from pathlib import Path

from staged_output import staged_output

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout
from projects.toy_world.world import (HELD_OUT_CONCEPTS, caption, concept_scenes,  # noqa: E402
                             concept_template, render_scene)

N_TRAIN = 5
N_HELD_OUT = 8

README = """# Toy-world concepts

Synthetic Textual Inversion concepts from mmti's toy world (`projects/toy_world/world/`):
attribute combinations that the toy world's pretraining scenes never show
(`ToyWorldDataset(exclude_held_out=True)`), although each part (shape, colour,
pattern) appears there on its own.

Each concept folder has `train/` ({n_train} images to learn the concept from)
and `held_out/` ({n_held_out} further images of it, for evaluation). Each
image has a caption file (`0.txt` beside `0.png`; `caption_files=True` in
training, `--reconstruct-held-out-captions` in `tools/evaluate.py`) that says
everything but the concept, which is `{{}}`: "a small {{}} on the left on a
blue background". All are
{size} x {size} PNGs of the concept with size, position and background varied;
no image repeats within a concept.

Made by `python tools/dev/make_toy_concepts.py --seed {seed} --size {size}`, which
is deterministic: rerunning it (with `--force`) gives the same images.

| concept | attributes | train captions |
| --- | --- | --- |
{rows}
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Write the held-out toy-world concepts')
    parser.add_argument('--out', default='data/toy_concepts')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--size', type=int, default=32,
                        help='image side in pixels; the toy SD draws at 32')
    parser.add_argument('--force', action='store_true', help='replace an existing folder')
    return parser.parse_args(argv)


def write_concepts(folder: Path, seed: int, size: int) -> None:
    """Write every concept's images and the README into ``folder``."""
    rows = []
    for name, attributes in HELD_OUT_CONCEPTS.items():
        # One list split in two: training and held-out images never coincide.
        scenes = concept_scenes(name, N_TRAIN + N_HELD_OUT, seed)
        splits = {'train': scenes[:N_TRAIN], 'held_out': scenes[N_TRAIN:]}
        for split, split_scenes in splits.items():
            (folder / name / split).mkdir(parents=True)
            for i, scene in enumerate(split_scenes):
                render_scene(scene, size=size).save(folder / name / split / f'{i}.png')
                (folder / name / split / f'{i}.txt').write_text(concept_template(scene) + '\n')
        # What a many-concept config needs (concepts='<out>'): the starting word,
        # the recipe's two rows, where the images are.
        (folder / name / 'concept.json').write_text(json.dumps(dict(
            initializer_token=attributes['shape'], num_vectors=2, data_root='train',
            held_out_dir='held_out', caption_files=True), indent=1) + '\n')
        attrs = ', '.join(f'{k}={v}' for k, v in attributes.items())
        captions = '<br>'.join(caption(s) for s in splits['train'])
        rows.append(f'| `{name}` | {attrs} | {captions} |')
    (folder / 'README.md').write_text(README.format(
        n_train=N_TRAIN, n_held_out=N_HELD_OUT, size=size, seed=seed, rows='\n'.join(rows)))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    if out.exists() and not args.force:
        print(f'{out} exists; pass --force to replace it.', file=sys.stderr)
        return 1
    with staged_output(out, force=True) as tmp:  # out is absent, or --force was given
        write_concepts(tmp, args.seed, args.size)
    print(f'Wrote {len(HELD_OUT_CONCEPTS)} concepts to {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
