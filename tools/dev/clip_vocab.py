"""CLIP's BPE tokenizer files, converted from the openai-clip package.

SD 1.5, SD 2.x and SDXL all tokenize with CLIP's byte-level BPE vocabulary;
only the padding token differs. :func:`write_clip_tokenizer` converts the BPE
file of openai/CLIP into the ``vocab.json`` / ``merges.txt`` layout of SD's
``tokenizer/`` folder; :func:`copy_clip_tokenizer` reuses converted files, so
only the first model needs the openai-clip package.
"""

from __future__ import annotations

import gzip
import importlib.util
import shutil
from pathlib import Path

from staged_output import write_json

CLIP_BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
CLIP_MAX_LENGTH = 77
CLIP_BOS = "<|startoftext|>"
CLIP_EOS = "<|endoftext|>"
# SD 2.x's tokenizer and SDXL's second one (both OpenCLIP) pad with "!", id 0,
# instead of repeating the end token.
OPENCLIP_PAD = "!"
# CLIP's vocabulary is 49152 BPE symbols, of which 256 are bytes and two are
# the special tokens; the remainder are the first merges of the BPE file, and
# the byte symbols also exist in an end-of-word ("</w>") variant.
CLIP_BPE_VOCAB_SIZE = 49152
CLIP_NUM_MERGES = CLIP_BPE_VOCAB_SIZE - 256 - 2
CLIP_VOCAB_SIZE = 2 * 256 + CLIP_NUM_MERGES + 2  # = 49408
# Header line of merges.txt: tokenizer loaders skip the first line.
MERGES_HEADER = "#version: 0.2"


def find_clip_bpe_file() -> Path:
    """Locate the BPE merges file shipped by the openai-clip package.

    The package itself is not imported (its import pulls in torchvision); only
    its data file is read.

    Returns:
        Path to ``bpe_simple_vocab_16e6.txt.gz``.

    Raises:
        FileNotFoundError: If the package or its data file is not installed.
    """
    spec = importlib.util.find_spec("clip")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the openai-clip package is not installed (pip install openai-clip)")
    path = Path(list(spec.submodule_search_locations)[0]) / CLIP_BPE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the openai-clip package")
    return path


def byte_symbols() -> list[str]:
    """Return the printable symbol that byte-level BPE uses for each byte.

    GPT-2 style byte-level BPE works on unicode strings, so every byte needs a
    visible, non-whitespace character. Bytes that are already printable Latin-1
    characters stand for themselves; the others (control characters, space,
    soft hyphen, ...) are mapped, in byte order, to the characters from U+0100
    on. The result is ordered as CLIP orders its first 256 vocabulary entries:
    the printable bytes first, then the remapped ones.

    Returns:
        256 one-character strings, in vocabulary order.
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("\xa1"), ord("\xac") + 1),
        *range(ord("\xae"), ord("\xff") + 1),
    ]
    kept = set(printable)
    remapped = [b for b in range(256) if b not in kept]
    symbols = [chr(b) for b in printable]
    symbols += [chr(256 + i) for i in range(len(remapped))]
    return symbols


def read_clip_merges(bpe_file: Path) -> list[str]:
    """Read the merges that make up CLIP's vocabulary.

    Args:
        bpe_file: The gzipped BPE file of the openai-clip package.

    Returns:
        ``CLIP_NUM_MERGES`` merge rules, highest priority first, each as
        ``"left right"``.
    """
    lines = gzip.decompress(bpe_file.read_bytes()).decode("utf-8").split("\n")
    # Line 0 is a version header; the file holds ~262k merges, CLIP keeps
    # only as many as fit its 49152-symbol vocabulary.
    merges = lines[1 : 1 + CLIP_NUM_MERGES]
    if len(merges) != CLIP_NUM_MERGES or any(len(m.split()) != 2 for m in merges):
        raise ValueError(f"{bpe_file} does not look like CLIP's BPE file")
    return merges


def build_clip_vocab(merges: list[str]) -> dict[str, int]:
    """Build CLIP's token -> id table.

    Args:
        merges: Merge rules from :func:`read_clip_merges`.

    Returns:
        The 49408-entry vocabulary: bytes, bytes + ``</w>``, one token per
        merge (the two halves joined), then the start and end tokens.
    """
    symbols = byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols]
    tokens += ["".join(m.split()) for m in merges]
    tokens += [CLIP_BOS, CLIP_EOS]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    if len(vocab) != CLIP_VOCAB_SIZE:
        raise ValueError(f"expected {CLIP_VOCAB_SIZE} unique tokens, got {len(vocab)}")
    return vocab


def write_clip_tokenizer_configs(out_dir: Path, pad_token: str = CLIP_EOS) -> None:
    """Write ``special_tokens_map.json`` and ``tokenizer_config.json``.

    Args:
        out_dir: Tokenizer folder.
        pad_token: The padding token: CLIP's end token for OpenAI CLIP
            encoders (SD 1.5, SDXL's first), ``"!"`` for OpenCLIP ones.
    """
    special = {"bos_token": CLIP_BOS, "eos_token": CLIP_EOS, "unk_token": CLIP_EOS, "pad_token": pad_token}
    write_json(out_dir / "special_tokens_map.json", special)
    write_json(
        out_dir / "tokenizer_config.json",
        {
            "tokenizer_class": "CLIPTokenizer",
            "model_max_length": CLIP_MAX_LENGTH,
            "do_lower_case": True,
            **special,
        },
    )


def write_clip_tokenizer(out_dir: Path) -> None:
    """Write the real CLIP tokenizer in the layout of SD 1.5's ``tokenizer/``.

    Only ``vocab.json`` and ``merges.txt`` plus small configs are written (no
    ``tokenizer.json``), like the original checkpoint, so both the Python and
    the Rust-backed ``CLIPTokenizer`` of any transformers version can read it.

    Args:
        out_dir: Folder to create the files in.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    merges = read_clip_merges(find_clip_bpe_file())
    # Compact JSON: the vocabulary is 49k entries and nobody reads it by hand.
    write_json(out_dir / "vocab.json", build_clip_vocab(merges), indent=None)
    (out_dir / "merges.txt").write_text("\n".join([MERGES_HEADER, *merges]) + "\n", encoding="utf-8")
    write_clip_tokenizer_configs(out_dir)


def copy_clip_tokenizer(source: Path, out_dir: Path, pad_token: str) -> None:
    """Copy the CLIP BPE files of ``source`` and set the padding token.

    SD 2.x and SDXL use the very same BPE vocabulary and merges as SD 1.5; only
    the special-token settings differ. Copying the committed files keeps these
    families independent of the openai-clip package.

    Args:
        source: A tokenizer folder written by :func:`write_clip_tokenizer`
            (``data/tiny-sd/tokenizer``).
        out_dir: Folder to create the files in.
        pad_token: See :func:`write_clip_tokenizer_configs`.

    Raises:
        FileNotFoundError: If ``source`` lacks a BPE file.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.json", "merges.txt"):
        if not (source / name).is_file():
            raise FileNotFoundError(f"{source / name} is missing; build data/tiny-sd first (--family sd15)")
        shutil.copyfile(source / name, out_dir / name)
    write_clip_tokenizer_configs(out_dir, pad_token)
