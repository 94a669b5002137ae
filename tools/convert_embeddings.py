"""Convert a learned embedding between diffusers, A1111, kohya and SDXL layouts.

    python tools/convert_embeddings.py learned_embeds.safetensors cat-toy.pt --to a1111
    python tools/convert_embeddings.py downloaded.pt learned_embeds.safetensors

The input layout is detected from the content. Pickle-based inputs are read
with torch.load(weights_only=True) only; a file that would need to run code is
refused.
"""
import argparse
import os.path as osp
import sys
from pathlib import Path

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout
from mmti.fileio import FORMATS, read_embedding_file, write_embedding_file  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('input', help='embedding file, or a folder with learned_embeds.*')
    parser.add_argument('output', help='file to write')
    parser.add_argument('--to', choices=FORMATS, default=None,
                        help='output layout (default: a1111 for .pt, else diffusers)')
    parser.add_argument('--token', default=None,
                        help='name of the concept in the output; for an input with several '
                             'concepts, the one to convert')
    parser.add_argument('--force', action='store_true', help='overwrite an existing output')
    return parser.parse_args(argv)


def second_encoder_path(path: Path) -> Path:
    """diffusers' SDXL pair: learned_embeds.safetensors + learned_embeds_2.safetensors."""
    return path.with_name(f'{path.stem}_2{path.suffix}')


def convert(args: argparse.Namespace) -> list[Path]:
    src, out = Path(args.input), Path(args.output)
    fmt = args.to or ('a1111' if out.suffix == '.pt' else 'diffusers')
    contents = read_embedding_file(src)
    names = list(contents.embeddings)
    if args.token is not None and len(names) > 1:
        if args.token not in names:
            raise ValueError(f'{src} holds {names}; --token {args.token!r} is not among them.')
        names = [args.token]
    new_name = args.token or names[0]
    if fmt != 'diffusers' and len(names) > 1:
        raise ValueError(f'{src} holds {names}; the {fmt} layout takes one concept per file. '
                         'Pick one with --token.')
    embeddings = {(new_name if len(names) == 1 else n): contents.embeddings[n] for n in names}
    second = {(new_name if len(names) == 1 else n): contents.embeddings_2[n]
              for n in names if n in contents.embeddings_2}
    if fmt == 'sdxl' and not second:
        raise ValueError(f'{src} has rows for one text encoder only; an SDXL file needs clip_l '
                         'and clip_g rows, so an SD 1.x/2.x embedding cannot become one.')

    targets = [out]
    if second and fmt != 'sdxl':
        targets.append(second_encoder_path(out))  # clip_g rows go beside, as diffusers does
    for target in targets:
        if target.resolve() == src.resolve():
            raise ValueError(f'Output {target} is the input; choose another name.')
        if target.exists() and not args.force:
            raise FileExistsError(f'{target} exists; pass --force to overwrite it.')

    if fmt == 'sdxl':
        write_embedding_file(out, embeddings, 'sdxl', embeddings_2=second, step=contents.step)
    else:
        write_embedding_file(out, embeddings, fmt, step=contents.step)
        if second:
            write_embedding_file(targets[1], second, fmt, step=contents.step)
    return targets


def main(argv: list[str] | None = None) -> list[Path]:
    args = parse_args(argv)
    try:
        written = convert(args)
    except (ValueError, OSError) as err:
        raise SystemExit(f'convert_embeddings.py: error: {err}') from None
    for path in written:
        print(f'Wrote {path}')
    return written


if __name__ == '__main__':
    main()
