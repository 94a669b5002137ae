"""Build the tiny Stable Diffusion test model and the demo "cat toy" images.

The tests and the CPU smoke runs of mmti need a Stable Diffusion checkpoint
that loads like the real one (diffusers folder layout, same component classes,
same tokenizer) but is small enough to commit and to train on a laptop CPU.
This script writes:

* ``data/tiny-sd/``: SD 1.5's architecture shrunk to a few MB, random weights,
  with the real CLIP BPE tokenizer so that prompts tokenize exactly as in SD.
* ``data/tiny-sd2/`` (``--family sd2``) and ``data/tiny-sdxl/``
  (``--family sdxl``): the same for SD 2.x (v-prediction, OpenCLIP-style text
  encoder) and SDXL (two text encoders, micro-conditioning). Their tokenizers
  are copied from ``data/tiny-sd/tokenizer`` and differ only in the padding
  token, so they do not need the openai-clip package.
* ``data/cat_toy/``: five procedurally drawn pictures of one toy cat, the
  concept used by the Textual Inversion demo.

Everything is deterministic: rerunning the script gives bitwise-identical
weight files and images (for the same library versions).

Usage::

    python tools/make_tiny_model.py [--out data/tiny-sd] [--force]
    python tools/make_tiny_model.py --family sd2 --out data/tiny-sd2 --model-only
    python tools/make_tiny_model.py --family sdxl --out data/tiny-sdxl --model-only
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

# Nothing here may ever reach a model hub: every component is built locally.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

if TYPE_CHECKING:
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        EulerDiscreteScheduler,
        PNDMScheduler,
        UNet2DConditionModel,
    )

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL_DIR = REPO_ROOT / "data" / "tiny-sd"
DEFAULT_IMAGES_DIR = REPO_ROOT / "data" / "cat_toy"

# One seed per component, so changing one component's shape never changes the
# weights of the others.
SEEDS = {"unet": 0, "vae": 1, "text_encoder": 2, "text_encoder_2": 3}

# --------------------------------------------------------------------------
# CLIP BPE tokenizer
# --------------------------------------------------------------------------

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


def write_json(path: Path, data: dict, *, indent: int | None = 2) -> None:
    """Write ``data`` as UTF-8 JSON with a trailing newline."""
    text = json.dumps(data, indent=indent, ensure_ascii=False)
    path.write_text(text + "\n", encoding="utf-8")


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


def copy_clip_tokenizer(out_dir: Path, pad_token: str) -> None:
    """Copy the CLIP BPE files of ``data/tiny-sd`` and set the padding token.

    SD 2.x and SDXL use the very same BPE vocabulary and merges as SD 1.5; only
    the special-token settings differ. Copying the committed files keeps these
    families independent of the openai-clip package.

    Args:
        out_dir: Folder to create the files in.
        pad_token: See :func:`write_clip_tokenizer_configs`.

    Raises:
        FileNotFoundError: If ``data/tiny-sd/tokenizer`` lacks a BPE file.
    """
    source = DEFAULT_MODEL_DIR / "tokenizer"
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.json", "merges.txt"):
        if not (source / name).is_file():
            raise FileNotFoundError(f"{source / name} is missing; build data/tiny-sd first (--family sd15)")
        shutil.copyfile(source / name, out_dir / name)
    write_clip_tokenizer_configs(out_dir, pad_token)


# --------------------------------------------------------------------------
# Stable Diffusion 1.5
# --------------------------------------------------------------------------

SD15_TEXT_ENCODER = dict(
    vocab_size=CLIP_VOCAB_SIZE,
    max_position_embeddings=CLIP_MAX_LENGTH,
    hidden_size=32,
    intermediate_size=37,
    num_hidden_layers=2,
    num_attention_heads=4,
    projection_dim=32,
    hidden_act="quick_gelu",
    bos_token_id=49406,
    eos_token_id=49407,
    pad_token_id=49407,
)

SD15_UNET = dict(
    # 64 px images / VAE factor 8 = 8x8 latents.
    sample_size=8,
    in_channels=4,
    out_channels=4,
    block_out_channels=(32, 64),
    layers_per_block=1,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    # Must equal the text encoder's hidden size.
    cross_attention_dim=SD15_TEXT_ENCODER["hidden_size"],
    # diffusers reads this as the number of heads (a historical misnomer), so
    # heads are 8 and 16 channels wide.
    attention_head_dim=4,
    norm_num_groups=32,
)

SD15_VAE = dict(
    # Four blocks give three downsamplings: the same factor 8 as SD's VAE.
    block_out_channels=(32, 32, 64, 64),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    layers_per_block=1,
    norm_num_groups=32,
    sample_size=64,
    scaling_factor=0.18215,
)

SD15_SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    skip_prk_steps=True,
    steps_offset=1,
    set_alpha_to_one=False,
    prediction_type="epsilon",
)


def count_params(model: torch.nn.Module) -> int:
    """Return the number of parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())


def build_seeded(name: str, factory: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """Build a model with random weights drawn from the component's own seed.

    Args:
        name: Component name, a key of :data:`SEEDS`.
        factory: Builds the model; all random init must happen inside it.

    Returns:
        The model in eval mode.
    """
    torch.manual_seed(SEEDS[name])
    return factory().eval()


def make_text_encoder(name: str, config: dict, with_projection: bool = False) -> torch.nn.Module:
    """A CLIP text encoder (``CLIPTextModelWithProjection`` for SDXL's second) from ``config``."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    return build_seeded(name, lambda: cls(CLIPTextConfig(**config)))


def make_unet(config: dict) -> UNet2DConditionModel:
    """A UNet2DConditionModel from ``config``, weights from the UNet's seed."""
    from diffusers import UNet2DConditionModel

    return build_seeded("unet", lambda: UNet2DConditionModel(**config))


def make_vae(config: dict) -> AutoencoderKL:
    """An AutoencoderKL from ``config``, weights from the VAE's seed."""
    from diffusers import AutoencoderKL

    return build_seeded("vae", lambda: AutoencoderKL(**config))


def save_components(out_dir: Path, models: dict[str, torch.nn.Module], scheduler) -> dict[str, int]:
    """Save each model and the scheduler in its subfolder; parameter count per model."""
    for name, model in models.items():
        model.save_pretrained(out_dir / name, safe_serialization=True)
    scheduler.save_pretrained(out_dir / "scheduler")
    return {name: count_params(model) for name, model in models.items()}


def write_model_index(out_dir: Path, pipeline: str, models: dict[str, torch.nn.Module], scheduler,
                      tokenizers: tuple[str, ...], absent: tuple[str, ...], **flags) -> None:
    """Write ``model_index.json`` for a diffusers pipeline folder.

    Optional components (safety checker, feature extractor, image encoder) are
    declared absent (null) rather than left out, so diffusers does not look
    for them.

    Args:
        out_dir: The pipeline folder.
        pipeline: The diffusers pipeline class name.
        models, scheduler: The saved components (their classes are recorded).
        tokenizers: Subfolders holding a ``CLIPTokenizer``.
        absent: Optional components the folder does not have.
        flags: Other pipeline settings (``requires_safety_checker`` ...).
    """
    import diffusers

    entries = {name: [type(m).__module__.split(".")[0], type(m).__name__] for name, m in models.items()}
    entries["scheduler"] = ["diffusers", type(scheduler).__name__]
    entries.update({name: ["transformers", "CLIPTokenizer"] for name in tokenizers})
    entries.update({name: [None, None] for name in absent})
    entries.update(flags)
    write_json(out_dir / "model_index.json",
               {"_class_name": pipeline, "_diffusers_version": diffusers.__version__,
                **dict(sorted(entries.items()))})


# Optional parts of an SD 1.x/2.x pipeline folder that these models do not have.
SD_ABSENT = ("feature_extractor", "image_encoder", "safety_checker")


def make_sd15_scheduler() -> PNDMScheduler:
    """Build SD 1.5's PNDM scheduler with its original configuration."""
    from diffusers import PNDMScheduler

    scheduler = PNDMScheduler(**SD15_SCHEDULER)
    # SD 1.5's scheduler config also carries clip_sample=False. PNDM ignores it,
    # but it must be there for users who swap in DDIM, whose default is True.
    scheduler.register_to_config(clip_sample=False)
    return scheduler


def write_tiny_readme(out_dir: Path, family: str) -> None:
    """Write a short README describing the generated folder."""
    text = (
        f"# tiny-sd ({family})\n\n"
        "A tiny Stable Diffusion 1.5 pipeline in diffusers format for tests and CPU smoke runs: "
        "SD 1.5's architecture (UNet, VAE with downsampling factor 8, CLIP text encoder, PNDM "
        "scheduler) shrunk to about 15 MB, with random weights, so it produces noise, not pictures. "
        "It was made by `python tools/make_tiny_model.py`, which is deterministic. The tokenizer "
        "is the real CLIP BPE tokenizer, converted from `bpe_simple_vocab_16e6.txt.gz` of "
        "openai/CLIP (MIT licence, Copyright (c) 2021 OpenAI), so prompts tokenize exactly as in "
        "SD 1.5.\n"
    )
    (out_dir / "README.md").write_text(text, encoding="utf-8")


def make_sd15(out_dir: Path) -> dict[str, int]:
    """Write a tiny SD 1.5 pipeline folder.

    Args:
        out_dir: Empty folder to fill.

    Returns:
        Parameter count per model component.
    """
    models = {
        "text_encoder": make_text_encoder("text_encoder", SD15_TEXT_ENCODER),
        "unet": make_unet(SD15_UNET),
        "vae": make_vae(SD15_VAE),
    }
    scheduler = make_sd15_scheduler()
    params = save_components(out_dir, models, scheduler)
    write_clip_tokenizer(out_dir / "tokenizer")
    write_model_index(out_dir, "StableDiffusionPipeline", models, scheduler, ("tokenizer",),
                      SD_ABSENT, requires_safety_checker=False)
    write_tiny_readme(out_dir, "Stable Diffusion 1.5")
    return params


# --------------------------------------------------------------------------
# Full-size SD 1.5 architecture, random weights (for GPU benchmarks only)
# --------------------------------------------------------------------------

SD15_FULL_TEXT_ENCODER = dict(SD15_TEXT_ENCODER, hidden_size=768, intermediate_size=3072,
                              num_hidden_layers=12, num_attention_heads=12, projection_dim=768)
SD15_FULL_UNET = dict(
    sample_size=64,  # 512 px
    in_channels=4,
    out_channels=4,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    cross_attention_dim=768,
    attention_head_dim=8,
    norm_num_groups=32,
)
SD15_FULL_VAE = dict(SD15_VAE, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                     sample_size=512)


def make_sd15_full_random(out_dir: Path) -> dict[str, int]:
    """SD 1.5's exact architecture and sizes with random weights.

    No real checkpoint can be downloaded where mmti is built and benchmarked;
    step time and memory depend on the architecture, not on the weights, so
    this folder stands in for ``stable-diffusion-v1-5`` in speed tests. The
    tokenizer is copied from ``data/tiny-sd`` (same real CLIP BPE).
    """
    models = {
        "text_encoder": make_text_encoder("text_encoder", SD15_FULL_TEXT_ENCODER),
        # fp16 files keep the folder at 2 GB; the text encoder stays fp32, as on
        # the hub, because trainers that load it without a dtype train its table.
        "unet": make_unet(SD15_FULL_UNET).half(),
        "vae": make_vae(SD15_FULL_VAE).half(),
    }
    scheduler = make_sd15_scheduler()
    params = save_components(out_dir, models, scheduler)
    shutil.copytree(DEFAULT_MODEL_DIR / "tokenizer", out_dir / "tokenizer")
    write_model_index(out_dir, "StableDiffusionPipeline", models, scheduler, ("tokenizer",),
                      SD_ABSENT, requires_safety_checker=False)
    return params


# --------------------------------------------------------------------------
# Stable Diffusion 2.x
# --------------------------------------------------------------------------

# OpenCLIP ViT-H/14 shrunk: plain GELU, and "!" (id 0) as padding.
SD2_TEXT_ENCODER = dict(SD15_TEXT_ENCODER, hidden_act="gelu", pad_token_id=0)

SD2_UNET = dict(
    SD15_UNET,
    # Heads per block (2 and 4 heads of 16 channels): SD 2.x lists one value
    # per block, where SD 1.5 has a single number.
    attention_head_dim=(2, 4),
    use_linear_projection=True,
    upcast_attention=False,
)

SD2_VAE = dict(SD15_VAE)

# SD 2.1's scheduler: DDIM with v-prediction.
SD2_SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
    prediction_type="v_prediction",
    timestep_spacing="leading",
)


def make_sd2_scheduler() -> DDIMScheduler:
    """Build SD 2.1's DDIM scheduler with its original configuration."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(**SD2_SCHEDULER)
    # SD 2.1's scheduler config also carries skip_prk_steps=True. DDIM ignores
    # it, but users who swap in PNDM need it (PNDM's default is False).
    scheduler.register_to_config(skip_prk_steps=True)
    return scheduler


SD2_README = """\
# tiny-sd2 (Stable Diffusion 2.x)

A tiny Stable Diffusion 2.x pipeline in diffusers format for tests and CPU smoke runs: SD 2.1's
architecture shrunk to about 15 MB, with random weights, so it produces noise, not pictures. What
sets it apart from `tiny-sd` (SD 1.5): an OpenCLIP-style text encoder (`gelu`, padding with `!`,
id 0), a UNet with per-block head counts and linear projections in its transformers, and a DDIM
scheduler with `v_prediction`. It samples at 64 px (8x8 latents); SD 2.1 works at 768 px.

It was made by `python tools/make_tiny_model.py --family sd2 --out data/tiny-sd2 --model-only`,
which is deterministic. The tokenizer's `vocab.json` and `merges.txt` are copied from
`data/tiny-sd/tokenizer`: the real CLIP BPE tokenizer, converted from `bpe_simple_vocab_16e6.txt.gz`
of openai/CLIP (MIT licence, Copyright (c) 2021 OpenAI).
"""


def make_sd2(out_dir: Path) -> dict[str, int]:
    """Write a tiny SD 2.x pipeline folder.

    Args:
        out_dir: Empty folder to fill.

    Returns:
        Parameter count per model component.
    """
    models = {
        "text_encoder": make_text_encoder("text_encoder", SD2_TEXT_ENCODER),
        "unet": make_unet(SD2_UNET),
        "vae": make_vae(SD2_VAE),
    }
    scheduler = make_sd2_scheduler()
    params = save_components(out_dir, models, scheduler)
    copy_clip_tokenizer(out_dir / "tokenizer", pad_token=OPENCLIP_PAD)
    write_model_index(out_dir, "StableDiffusionPipeline", models, scheduler, ("tokenizer",),
                      SD_ABSENT, requires_safety_checker=False)
    (out_dir / "README.md").write_text(SD2_README, encoding="utf-8")
    return params


# --------------------------------------------------------------------------
# Stable Diffusion XL
# --------------------------------------------------------------------------

# OpenAI CLIP ViT-L/14 shrunk, as in SD 1.5 (quick_gelu, pads with the end
# token). The UNet reads its penultimate hidden states.
SDXL_TEXT_ENCODER = dict(SD15_TEXT_ENCODER)

# OpenCLIP ViT-bigG/14 shrunk: wider than the first encoder, plain GELU, "!"
# padding, and a projection whose pooled output conditions the UNet. With
# eos_token_id=49407 transformers pools at the first end token; SDXL's hub
# config says 2, which selects its legacy rule (pool at the largest id).
SDXL_TEXT_ENCODER_2 = dict(
    SD15_TEXT_ENCODER,
    hidden_size=64,
    intermediate_size=37 * 2,
    hidden_act="gelu",
    projection_dim=32,
    pad_token_id=0,
)

# Micro-conditioning: original size, crop corner and target size, 2 numbers
# each, every one embedded in addition_time_embed_dim channels.
SDXL_NUM_TIME_IDS = 6
SDXL_ADDITION_TIME_EMBED_DIM = 8

SDXL_UNET = dict(
    sample_size=8,  # 64 px
    in_channels=4,
    out_channels=4,
    block_out_channels=(32, 64),
    layers_per_block=1,
    # SDXL has no attention at the highest resolution.
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    # Deeper transformers at lower resolutions, like SDXL's (1, 2, 10); the
    # mid block takes the last value.
    transformer_layers_per_block=(1, 2),
    attention_head_dim=(2, 4),
    use_linear_projection=True,
    # Both encoders' penultimate hidden states, concatenated.
    cross_attention_dim=SDXL_TEXT_ENCODER["hidden_size"] + SDXL_TEXT_ENCODER_2["hidden_size"],
    addition_embed_type="text_time",
    addition_time_embed_dim=SDXL_ADDITION_TIME_EMBED_DIM,
    # Time-id embeddings plus the second encoder's pooled, projected output.
    projection_class_embeddings_input_dim=(
        SDXL_NUM_TIME_IDS * SDXL_ADDITION_TIME_EMBED_DIM + SDXL_TEXT_ENCODER_2["projection_dim"]
    ),
    norm_num_groups=32,
)

# SDXL's VAE has the same layout with a different latent scale. force_upcast
# stays True (diffusers' default and SDXL's setting): the VAE decodes in fp32.
SDXL_VAE = dict(SD15_VAE, scaling_factor=0.13025, force_upcast=True)

SDXL_SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    prediction_type="epsilon",
    interpolation_type="linear",
    use_karras_sigmas=False,
    timestep_spacing="leading",
    steps_offset=1,
)


def make_sdxl_scheduler() -> EulerDiscreteScheduler:
    """Build SDXL's Euler scheduler with its original configuration."""
    from diffusers import EulerDiscreteScheduler

    scheduler = EulerDiscreteScheduler(**SDXL_SCHEDULER)
    # Keys of SDXL's scheduler config that Euler ignores but other schedulers
    # read when users swap them in (DDIM, PNDM).
    scheduler.register_to_config(
        clip_sample=False, sample_max_value=1.0, set_alpha_to_one=False, skip_prk_steps=True
    )
    return scheduler


SDXL_README = """\
# tiny-sdxl (Stable Diffusion XL)

A tiny Stable Diffusion XL pipeline in diffusers format for tests and CPU smoke runs: SDXL's
architecture shrunk to about 30 MB (mostly the two 49408-row token tables), with random weights,
so it produces noise, not pictures. Like SDXL it has two text encoders: a CLIP ViT-L-style
`text_encoder` (hidden size 32, `quick_gelu`, pads with `<|endoftext|>`) and an OpenCLIP
bigG-style `text_encoder_2` with projection (hidden size 64, `gelu`, pads with `!`). Their
penultimate hidden states are concatenated (96 channels) for cross-attention; the UNet also takes
the size/crop time ids and `text_encoder_2`'s pooled projection (`addition_embed_type="text_time"`).
The VAE uses SDXL's latent scale 0.13025 and the scheduler is SDXL's Euler configuration. It
samples at 64 px (8x8 latents); SDXL works at 1024 px.

One deliberate difference: both encoder configs say `eos_token_id: 49407`, so transformers pools
at the first end token. SDXL's published configs say `eos_token_id: 2`, for which transformers
keeps the old rule and pools at the largest token id, that is at an added placeholder token
(ids from 49408) whenever the prompt has one.

It was made by `python tools/make_tiny_model.py --family sdxl --out data/tiny-sdxl --model-only`,
which is deterministic. Both tokenizers' `vocab.json` and `merges.txt` are copied from
`data/tiny-sd/tokenizer`: the real CLIP BPE tokenizer, converted from `bpe_simple_vocab_16e6.txt.gz`
of openai/CLIP (MIT licence, Copyright (c) 2021 OpenAI).
"""


def make_sdxl(out_dir: Path) -> dict[str, int]:
    """Write a tiny SDXL pipeline folder.

    Args:
        out_dir: Empty folder to fill.

    Returns:
        Parameter count per model component.
    """
    models = {
        "text_encoder": make_text_encoder("text_encoder", SDXL_TEXT_ENCODER),
        "text_encoder_2": make_text_encoder("text_encoder_2", SDXL_TEXT_ENCODER_2, with_projection=True),
        "unet": make_unet(SDXL_UNET),
        "vae": make_vae(SDXL_VAE),
    }
    scheduler = make_sdxl_scheduler()
    params = save_components(out_dir, models, scheduler)
    copy_clip_tokenizer(out_dir / "tokenizer", pad_token=CLIP_EOS)
    copy_clip_tokenizer(out_dir / "tokenizer_2", pad_token=OPENCLIP_PAD)
    # No watermark: a tiny model's output needs none, and the pipeline would
    # otherwise turn it on whenever invisible-watermark happens to be installed.
    write_model_index(out_dir, "StableDiffusionXLPipeline", models, scheduler,
                      ("tokenizer", "tokenizer_2"), ("feature_extractor", "image_encoder"),
                      add_watermarker=False, force_zeros_for_empty_prompt=True)
    (out_dir / "README.md").write_text(SDXL_README, encoding="utf-8")
    return params


# Model families this script can build.
MODEL_FAMILIES: dict[str, Callable[[Path], dict[str, int]]] = {
    "sd15": make_sd15,
    "sd15-full-random": make_sd15_full_random,
    "sd2": make_sd2,
    "sdxl": make_sdxl,
}


# --------------------------------------------------------------------------
# Demo concept images: a toy cat
# --------------------------------------------------------------------------

Color = tuple[int, int, int]

ORANGE: Color = (238, 134, 44)
DARK_ORANGE: Color = (196, 92, 24)
CREAM: Color = (255, 226, 180)
TEAL: Color = (22, 160, 152)
DARK_TEAL: Color = (12, 104, 100)
PINK: Color = (240, 128, 150)
YELLOW: Color = (250, 206, 60)
INK: Color = (54, 34, 24)
WHITE: Color = (255, 255, 255)

# The sprite is drawn large on a 100 x 130 unit grid and scaled down later,
# which gives smooth, anti-aliased edges without any extra machinery.
SPRITE_UNITS = (100, 130)
SPRITE_PX_PER_UNIT = 6


@dataclass(frozen=True)
class Scene:
    """How one demo image shows the toy.

    Attributes:
        size: Image (width, height) in pixels.
        background: Name of a background in :data:`BACKGROUNDS`.
        colors: The background's two colours.
        center: Sprite centre as fractions of width and height.
        height: Sprite height as a fraction of the image height.
        angle: Counter-clockwise tilt in degrees.
        mirror: Whether the toy faces the other way.
    """

    size: tuple[int, int]
    background: str
    colors: tuple[Color, Color]
    center: tuple[float, float]
    height: float
    angle: float = 0.0
    mirror: bool = False


SCENES = (
    Scene((96, 96), "plain", ((244, 238, 222), (244, 238, 222)), (0.5, 0.52), 0.86),
    Scene((128, 96), "vertical", ((150, 200, 240), (250, 250, 255)), (0.36, 0.55), 0.78, angle=-8),
    Scene((80, 112), "horizontal", ((206, 190, 238), (255, 214, 190)), (0.5, 0.62), 0.6, angle=6),
    Scene((120, 120), "radial", ((214, 240, 200), (110, 160, 110)), (0.64, 0.42), 0.46),
    Scene((112, 84), "floor", ((226, 226, 232), (176, 140, 110)), (0.66, 0.52), 0.9, angle=4, mirror=True),
)


def _box(cx: float, cy: float, rx: float, ry: float) -> tuple[float, float, float, float]:
    """Bounding box of an ellipse given its centre and radii (sprite units)."""
    s = SPRITE_PX_PER_UNIT
    return ((cx - rx) * s, (cy - ry) * s, (cx + rx) * s, (cy + ry) * s)


def _pts(*points: tuple[float, float]) -> list[tuple[float, float]]:
    """Convert sprite-unit points to pixels."""
    s = SPRITE_PX_PER_UNIT
    return [(x * s, y * s) for x, y in points]


def _draw_body(draw: ImageDraw.ImageDraw, line: int) -> None:
    """Draw the pedestal, tail, body, belly and collar of the toy."""
    s = SPRITE_PX_PER_UNIT
    # A teal stand makes it read as a toy rather than a real cat.
    draw.rounded_rectangle(_box(50, 118, 34, 8), radius=5 * s, fill=TEAL, outline=INK, width=line)
    # Tail: a thick arc drawn twice, dark then light, for an outline.
    draw.arc(_box(80, 88, 14, 22), start=200, end=340, fill=INK, width=8 * s)
    draw.arc(_box(80, 88, 14, 22), start=203, end=337, fill=ORANGE, width=5 * s)
    draw.ellipse(_box(50, 90, 27, 24), fill=ORANGE, outline=INK, width=line)
    draw.ellipse(_box(50, 96, 14, 15), fill=CREAM)
    for dx in (-18, 18):  # front paws
        draw.ellipse(_box(50 + dx, 110, 8, 5), fill=CREAM, outline=INK, width=line)
    draw.rounded_rectangle(_box(50, 66, 22, 4), radius=3 * s, fill=TEAL, outline=INK, width=line)
    draw.ellipse(_box(50, 72, 4.5, 4.5), fill=YELLOW, outline=INK, width=line)


def _draw_head(draw: ImageDraw.ImageDraw, line: int) -> None:
    """Draw the head: ears, stripes, eyes, nose, mouth and whiskers."""
    s = SPRITE_PX_PER_UNIT
    for side in (-1, 1):
        outer = _pts((50 + side * 30, 28), (50 + side * 34, 2), (50 + side * 12, 18))
        inner = _pts((50 + side * 28, 24), (50 + side * 31, 8), (50 + side * 17, 18))
        draw.polygon(outer, fill=ORANGE, outline=INK, width=line)
        draw.polygon(inner, fill=TEAL)
    draw.ellipse(_box(50, 40, 33, 27), fill=ORANGE, outline=INK, width=line)
    for dx in (-7, 0, 7):  # forehead stripes
        draw.line(_pts((50 + dx, 15), (50 + dx * 1.2, 24)), fill=DARK_ORANGE, width=3 * s)
    draw.ellipse(_box(50, 52, 15, 10), fill=CREAM)
    for side in (-1, 1):
        ex = 50 + side * 13
        draw.ellipse(_box(ex, 38, 7, 8), fill=WHITE, outline=INK, width=line)
        draw.ellipse(_box(ex + side * 1.5, 39, 3.5, 5), fill=DARK_TEAL)
        draw.ellipse(_box(ex + side * 0.5, 36.5, 1.3, 1.3), fill=WHITE)
        for dy in (-3, 1, 5):  # whiskers fan out from the muzzle
            draw.line(_pts((50 + side * 12, 51 + dy * 0.5), (50 + side * 38, 49 + dy * 1.6)), fill=INK, width=line)
    draw.polygon(_pts((46, 47), (54, 47), (50, 52)), fill=PINK, outline=INK, width=line)
    draw.arc(_box(46, 52, 4, 4), start=20, end=160, fill=INK, width=line)
    draw.arc(_box(54, 52, 4, 4), start=20, end=160, fill=INK, width=line)


def draw_cat_toy_sprite() -> Image.Image:
    """Draw the toy cat on a transparent, high-resolution canvas.

    Returns:
        An RGBA image, taller than wide, with the toy filling most of it.
    """
    w, h = (u * SPRITE_PX_PER_UNIT for u in SPRITE_UNITS)
    sprite = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(sprite)
    line = max(1, round(1.2 * SPRITE_PX_PER_UNIT))
    _draw_body(draw, line)
    _draw_head(draw, line)
    return sprite


def _mix(colors: tuple[Color, Color], t: np.ndarray) -> Image.Image:
    """Blend two colours with weights ``t`` (0 -> first, 1 -> second)."""
    a, b = (np.asarray(c, dtype=np.float64) for c in colors)
    rgb = a + (b - a) * t[..., None]
    return Image.fromarray(np.round(rgb).astype(np.uint8), "RGB")


def make_background(kind: str, size: tuple[int, int], colors: tuple[Color, Color]) -> Image.Image:
    """Render a plain or gradient background.

    Args:
        kind: One of ``plain``, ``vertical``, ``horizontal``, ``radial`` or
            ``floor`` (wall colour above, table colour below).
        size: (width, height) in pixels.
        colors: The two colours to blend.

    Returns:
        An RGB image.
    """
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    y /= max(h - 1, 1)
    x /= max(w - 1, 1)
    if kind == "plain":
        t = np.zeros_like(x)
    elif kind == "vertical":
        t = y
    elif kind == "horizontal":
        t = x
    elif kind == "radial":
        t = np.clip(np.hypot(x - 0.5, y - 0.5) / math.sqrt(0.5), 0.0, 1.0)
    elif kind == "floor":
        # A soft edge instead of a hard step, and a darker wall near the top.
        t = 1.0 / (1.0 + np.exp(-(y - 0.7) * 60.0))
        t = np.maximum(t, 0.15 * (1.0 - y))
    else:
        raise ValueError(f"unknown background {kind!r}")
    return _mix(colors, t)


def render_scene(sprite: Image.Image, scene: Scene) -> Image.Image:
    """Composite the toy onto a background as described by ``scene``.

    Args:
        sprite: The RGBA sprite from :func:`draw_cat_toy_sprite`.
        scene: Placement, size and background.

    Returns:
        The RGB image.
    """
    toy = sprite.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if scene.mirror else sprite
    if scene.angle:
        toy = toy.rotate(scene.angle, resample=Image.Resampling.BICUBIC, expand=True)
    w, h = scene.size
    th = max(1, round(h * scene.height))
    tw = max(1, round(toy.width * th / toy.height))
    toy = toy.resize((tw, th), Image.Resampling.LANCZOS)
    canvas = make_background(scene.background, scene.size, scene.colors).convert("RGBA")
    left = round(scene.center[0] * w - tw / 2)
    top = round(scene.center[1] * h - th / 2)
    layer = Image.new("RGBA", scene.size, (0, 0, 0, 0))
    layer.paste(toy, (left, top))
    return Image.alpha_composite(canvas, layer).convert("RGB")


def make_cat_toy_images(out_dir: Path) -> list[Path]:
    """Write the demo concept images ``0.png`` ... ``4.png``.

    Args:
        out_dir: Empty folder to fill; it holds nothing but the images, so
            datasets can take every file in it as a training picture.

    Returns:
        The written paths.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    sprite = draw_cat_toy_sprite()
    paths = []
    for i, scene in enumerate(SCENES):
        path = out_dir / f"{i}.png"
        # optimize=False: the plain zlib encoder's output depends only on the
        # pixels, which keeps reruns byte-identical.
        render_scene(sprite, scene).save(path, format="PNG", optimize=False)
        paths.append(path)
    return paths


# --------------------------------------------------------------------------
# Output folders and CLI
# --------------------------------------------------------------------------


def is_nonempty_dir(path: Path) -> bool:
    """Whether ``path`` exists and is something other than an empty folder."""
    if not path.exists():
        return False
    return not path.is_dir() or any(path.iterdir())


def make_world_readable(root: Path) -> None:
    """Give ``root`` and everything under it the usual 755/644 permissions.

    ``mkdtemp`` (and some weight writers) create private 700/600 entries,
    which would make the committed data unreadable to other local users.

    Args:
        root: Folder to fix up, recursively.
    """
    umask = os.umask(0)
    os.umask(umask)  # reading the umask requires setting it; restore at once
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        mode = 0o755 if path.is_dir() else 0o644
        path.chmod(mode & ~umask)


@contextmanager
def staged_output(final: Path, force: bool) -> Iterator[Path]:
    """Give a temporary folder that replaces ``final`` only on success.

    The temporary folder sits next to ``final`` so the final move is a rename
    on the same filesystem; an interrupted run leaves ``final`` untouched.

    Args:
        final: Folder to produce.
        force: Replace ``final`` if it already has content.

    Yields:
        The temporary folder to write into.

    Raises:
        FileExistsError: If ``final`` has content and ``force`` is false.
    """
    if is_nonempty_dir(final) and not force:
        raise FileExistsError(f"{final} exists and is not empty; pass --force to replace it")
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield staging
        make_world_readable(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = None
    if final.exists() or final.is_symlink():
        # Move the old output aside first so there is never a moment without
        # a complete folder at ``final``'s path beyond the two renames.
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        final.rename(old)
    staging.rename(final)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            old.unlink()


def folder_size(path: Path) -> int:
    """Total size in bytes of the files under ``path``."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL_DIR, help="model folder to write")
    parser.add_argument("--images-out", type=Path, default=DEFAULT_IMAGES_DIR, help="demo image folder to write")
    parser.add_argument("--family", choices=sorted(MODEL_FAMILIES), default="sd15", help="model family to build")
    parser.add_argument("--force", action="store_true", help="replace existing non-empty output folders")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--model-only", action="store_true", help="do not write the demo images")
    only.add_argument("--images-only", action="store_true", help="do not write the model")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the command line tool.

    Args:
        argv: Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The process exit status.
    """
    args = parse_args(argv)
    # Check both targets before writing anything, so a refusal is all-or-nothing.
    targets = [] if args.images_only else [args.out]
    targets += [] if args.model_only else [args.images_out]
    for target in targets:
        if is_nonempty_dir(target) and not args.force:
            print(f"error: {target} exists and is not empty; pass --force to replace it", file=sys.stderr)
            return 1
    if not args.images_only:
        start = time.perf_counter()
        with staged_output(args.out, args.force) as tmp:
            params = MODEL_FAMILIES[args.family](tmp)
        for name, n in params.items():
            print(f"{name}: {n:,} parameters")
        size_mb = folder_size(args.out) / 2**20
        print(f"wrote {args.out} ({size_mb:.1f} MiB) in {time.perf_counter() - start:.1f} s")
    if not args.model_only:
        with staged_output(args.images_out, args.force) as tmp:
            paths = make_cat_toy_images(tmp)
        print(f"wrote {len(paths)} images to {args.images_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
