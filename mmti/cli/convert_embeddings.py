"""Convert a learned embedding between diffusers, A1111, kohya and SDXL layouts.

    python tools/convert_embeddings.py learned_embeds.safetensors cat-toy.pt --to a1111
    python tools/convert_embeddings.py downloaded.pt learned_embeds.safetensors
    python tools/convert_embeddings.py sdxl_run/ cat-toy-xl.safetensors --to sdxl
    python tools/convert_embeddings.py cat-toy.png learned_embeds.safetensors

The input layout is detected from the content; A1111's embedding PNGs (text
chunk or pixel strips) are read too. diffusers' SDXL pair
(learned_embeds.safetensors with learned_embeds_2.safetensors beside it, or a
folder holding both) is read as one embedding: ``--to sdxl`` writes the one
file A1111 and ComfyUI read. Converting an SDXL embedding to a layout with
one text encoder (a1111, safetensors) is refused unless
``--first-encoder-only`` says to keep only its clip_l rows.

Pickle-based inputs are read with torch.load(weights_only=True) only; a file
that would need to run code is refused.

Bad input (a damaged, empty or unknown file, rows that are NaN or infinite, an
output name whose extension does not fit the layout, an output folder that
does not exist, the input as output) is refused with one line, exit status 2,
before anything is written; ``--debug`` shows the traceback. The output is
written to a temporary file and renamed, so a failure never leaves a
truncated file, nor harms one that ``--force`` was to replace.
"""
import argparse
import os
from pathlib import Path

from mmti.fileio import (FORMATS, LAYOUT_SUFFIXES, EmbeddingFile,  # noqa: E402
                         check_layout_suffix, check_token_name, clip_g_half_problem,
                         describe_rows, layout_for, read_embedding_pair, second_file,
                         write_embedding_file)
from mmti.fileio.embedding_file import FOLDER_FILES  # noqa: E402
from mmti.utils import UserError, prog_name, run_cli  # noqa: E402

PROG = prog_name('tools/convert_embeddings.py')
# Layouts with room for one text encoder's rows (diffusers writes a pair).
ONE_ENCODER_FORMATS = ('a1111', 'safetensors')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split('\n')[0])
    parser.add_argument('input', help='embedding file, or a folder with learned_embeds.*')
    parser.add_argument('output', help='file to write')
    parser.add_argument('--to', choices=FORMATS, default=None,
                        help='output layout (default: a1111 for .pt, else diffusers)')
    parser.add_argument('--token', default=None,
                        help='name of the concept in the output; for an input with several '
                             'concepts, the one to convert')
    parser.add_argument('--force', action='store_true', help='overwrite an existing output')
    parser.add_argument('--first-encoder-only', action='store_true',
                        help='from an SDXL embedding (one file, or the diffusers pair), keep only '
                             'the clip_l rows: for a1111 or safetensors outputs')
    return parser.parse_args(argv)


def input_files(src: Path) -> list[Path]:
    """The file(s) ``src`` names: itself or the learned_embeds.* of a folder,
    and the second file of an SDXL pair."""
    files = [src / name for name in FOLDER_FILES] if src.is_dir() else [src]
    return [*files, second_file(src)]


def check_target(target: Path, fmt: str, src: Path, force: bool) -> None:
    """Refuse, before reading anything, an output that cannot be written well."""
    if target.is_dir():
        raise UserError(f'Output {target} is a folder; give a file name inside it, e.g. '
                        f'{target / ("learned_embeds" + LAYOUT_SUFFIXES[fmt][0])}.')
    try:
        check_layout_suffix(target, fmt, other='choose --to')
    except ValueError as err:
        raise UserError(f'Output {err}') from None
    folder = target.parent
    if not folder.exists():
        raise UserError(f'Output folder {folder} does not exist; create it first or write '
                        'somewhere else.')
    if not folder.is_dir():
        raise UserError(f'Output {target}: {folder} is a file, not a folder.')
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f'Output folder {folder} is not writable; write somewhere else.')
    if any(target.resolve() == f.resolve() for f in input_files(src) if f.exists()):
        raise UserError(f'Output {target} is the input; choose another name (the input stays '
                        'as it is).')
    if target.exists() and not force:
        raise UserError(f'Output {target} exists; pass --force to overwrite it.')


def convert(args: argparse.Namespace) -> list[Path]:
    src, out = Path(args.input), Path(args.output)
    fmt = args.to or layout_for(out)
    if not src.exists():
        raise UserError(f'Input {src} does not exist; check the path.')
    if args.token is not None:
        check_token_name(args.token, '--token', one_word=True)
    check_target(out, fmt, src, args.force)
    # diffusers' SDXL pair is one embedding: its _2 file beside (or in the
    # folder) is read with the first, never left behind unnoticed.
    contents = read_embedding_pair(src)
    half = clip_g_half_problem(src, verb='convert', where='')
    if half:
        raise UserError(f'{half}.')
    names = list(contents.embeddings)
    if args.token is not None and len(names) > 1:
        if args.token not in names:
            raise ValueError(f'{src} holds {names}; --token {args.token!r} is not among them.')
        names = [args.token]
    new_name = args.token or names[0]
    if len(names) > 1:
        # diffusers' load_textual_inversion, too, reads one concept a file.
        raise ValueError(f'{src} holds {names}; the {fmt} layout takes one concept per file. '
                         'Pick one with --token (mmti loads the file as it is).')
    embeddings = {(new_name if len(names) == 1 else n): contents.embeddings[n] for n in names}
    second = {(new_name if len(names) == 1 else n): contents.embeddings_2[n]
              for n in names if n in contents.embeddings_2}
    check_encoders(src, contents, fmt, bool(second), args.first_encoder_only)
    if args.first_encoder_only:
        second = {}

    targets = [out]
    if second and fmt != 'sdxl':
        targets.append(second_file(out))  # clip_g rows go beside, as diffusers does
    for target in targets:
        check_target(target, fmt, src, args.force)

    if fmt == 'sdxl':
        write_embedding_file(out, embeddings, 'sdxl', embeddings_2=second, step=contents.step)
    else:
        write_embedding_file(out, embeddings, fmt, step=contents.step)
        if second:
            write_embedding_file(targets[1], second, fmt, step=contents.step)
    return targets


def check_encoders(src: Path, contents: EmbeddingFile, fmt: str, two: bool,
                   first_only: bool) -> None:
    """Refuse a conversion that would lose one text encoder's rows, or invent them."""
    what = describe_rows(contents)
    if fmt == 'sdxl' and not two:
        pair = second_file(src)
        raise ValueError(f'{src} has rows for one text encoder only, of dimension {what}; the '
                         'sdxl layout needs clip_l (768) and clip_g (1280) rows. For diffusers\' '
                         f'SDXL pair, put its {pair.name} beside it (or give the folder holding '
                         'both).')
    if two and fmt in ONE_ENCODER_FORMATS and not first_only:
        kind = 'an SDXL file' if contents.format == 'sdxl' else (
            f'the first file of an SDXL pair ({second_file(src).name} beside it)')
        raise ValueError(f'{src} is {kind}, dimension {what}; the {fmt} layout holds one text '
                         'encoder, so the clip_g rows would be lost. Write --to sdxl (the one '
                         'file A1111 and ComfyUI read for SDXL), or pass --first-encoder-only to '
                         'keep only the clip_l rows.')


def main(argv: list[str] | None = None) -> list[Path]:
    """Convert; returns the files written. Errors propagate (see :func:`cli`)."""
    args = parse_args(argv)
    written = convert(args)
    for path in written:
        print(f'Wrote {path}')
    return written


def cli(argv: list[str] | None = None) -> None:
    """Entry point: user errors are one line on stderr and exit status 2."""
    run_cli(PROG, main, argv,
            on_interrupt=lambda: 'interrupted; no output was written, any existing one is kept.')


if __name__ == '__main__':
    cli()
