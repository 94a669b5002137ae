"""The tiny Stable Diffusion pipelines: SD 1.5, SD 2.x, SDXL, and full-size SD 1.5 and SDXL.

Each family keeps its original's architecture, component classes, scheduler
configuration and tokenizer, shrunk to a few MB with random weights drawn from
fixed seeds, so rebuilding a folder gives bitwise-identical files (for the
same library versions). ``sd15-full-random`` and ``sdxl-full-random`` keep the
originals' full sizes, for GPU speed tests where no real checkpoint can be
downloaded.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

# Nothing here may ever reach a model hub: every component is built locally.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from clip_vocab import (CLIP_EOS, CLIP_MAX_LENGTH, CLIP_VOCAB_SIZE, OPENCLIP_PAD,  # noqa: E402
                        copy_clip_tokenizer, write_clip_tokenizer)
from staged_output import write_json  # noqa: E402

if TYPE_CHECKING:
    from diffusers import AutoencoderKL, SchedulerMixin, UNet2DConditionModel

# The SD 1.5 model, whose converted tokenizer the other families copy.
TINY_SD = Path(__file__).resolve().parents[2] / "data" / "tiny-sd"

# One seed per component, so changing one component's shape never changes the
# weights of the others.
SEEDS = {"unet": 0, "vae": 1, "text_encoder": 2, "text_encoder_2": 3}


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
# SD 1.5's scheduler config also carries clip_sample=False. PNDM ignores it,
# but it must be there for users who swap in DDIM, whose default is True.
SD15_SCHEDULER_UNUSED = dict(clip_sample=False)


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


def make_scheduler(name: str, config: dict, **unused) -> SchedulerMixin:
    """Build diffusers' scheduler class ``name`` from ``config``.

    Args:
        name: The scheduler class.
        config: Its constructor arguments.
        unused: Keys the original checkpoint's scheduler config carries
            although this class ignores them; other schedulers read them when
            users swap those in, so they are recorded too.
    """
    import diffusers

    scheduler = getattr(diffusers, name)(**config)
    scheduler.register_to_config(**unused)
    return scheduler


def save_pipeline(out_dir: Path, pipeline: str, models: dict[str, torch.nn.Module], scheduler,
                  tokenizers: tuple[str, ...], absent: tuple[str, ...], readme: str | None,
                  **flags) -> dict[str, int]:
    """Save the models and scheduler, ``model_index.json`` and the README.

    Optional components (safety checker, feature extractor, image encoder) are
    declared absent (null) rather than left out, so diffusers does not look
    for them.

    Args:
        out_dir: The pipeline folder; the tokenizers are written separately.
        pipeline: The diffusers pipeline class name.
        models, scheduler: The components (``model_index.json`` records their classes).
        tokenizers: Subfolders holding a ``CLIPTokenizer``.
        absent: Optional components the folder does not have.
        readme: Text of ``README.md``; ``None`` writes none.
        flags: Other pipeline settings (``requires_safety_checker`` ...).

    Returns:
        Parameter count per model.
    """
    import diffusers

    for name, model in models.items():
        model.save_pretrained(out_dir / name, safe_serialization=True)
    scheduler.save_pretrained(out_dir / "scheduler")
    entries = {name: [type(m).__module__.split(".")[0], type(m).__name__] for name, m in models.items()}
    entries["scheduler"] = ["diffusers", type(scheduler).__name__]
    entries.update({name: ["transformers", "CLIPTokenizer"] for name in tokenizers})
    entries.update({name: [None, None] for name in absent})
    entries.update(flags)
    write_json(out_dir / "model_index.json",
               {"_class_name": pipeline, "_diffusers_version": diffusers.__version__,
                **dict(sorted(entries.items()))})
    if readme is not None:
        (out_dir / "README.md").write_text(readme, encoding="utf-8")
    return {name: sum(p.numel() for p in model.parameters()) for name, model in models.items()}


def make_sd(out_dir: Path, text_encoder: dict, unet: dict, vae: dict, scheduler: SchedulerMixin,
            readme: str | None, half: bool = False) -> dict[str, int]:
    """Build and save an SD 1.x/2.x pipeline; the caller writes ``out_dir/tokenizer``.

    Args:
        out_dir: The pipeline folder.
        text_encoder, unet, vae: The models' configs.
        scheduler: The scheduler.
        readme: See :func:`save_pipeline`.
        half: Store the UNet and VAE in fp16. The text encoder stays fp32, as
            on the hub, because trainers that load it without a dtype train
            its token table.
    """
    models = {
        "text_encoder": make_text_encoder("text_encoder", text_encoder),
        "unet": make_unet(unet),
        "vae": make_vae(vae),
    }
    if half:
        models["unet"].half()
        models["vae"].half()
    # The optional parts of an SD 1.x/2.x folder, which these models lack.
    absent = ("feature_extractor", "image_encoder", "safety_checker")
    return save_pipeline(out_dir, "StableDiffusionPipeline", models, scheduler, ("tokenizer",),
                         absent, readme, requires_safety_checker=False)


SD15_README = (
    "# tiny-sd (Stable Diffusion 1.5)\n\n"
    "A tiny Stable Diffusion 1.5 pipeline in diffusers format for tests and CPU smoke runs: "
    "SD 1.5's architecture (UNet, VAE with downsampling factor 8, CLIP text encoder, PNDM "
    "scheduler) shrunk to about 15 MB, with random weights, so it produces noise, not pictures. "
    "It was made by `python tools/dev/make_tiny_model.py`, which is deterministic. The tokenizer "
    "is the real CLIP BPE tokenizer, converted from `bpe_simple_vocab_16e6.txt.gz` of "
    "openai/CLIP (MIT licence, Copyright (c) 2021 OpenAI), so prompts tokenize exactly as in "
    "SD 1.5.\n"
)


def make_sd15(out_dir: Path) -> dict[str, int]:
    """Write a tiny SD 1.5 pipeline folder (see :data:`MODEL_FAMILIES`)."""
    write_clip_tokenizer(out_dir / "tokenizer")
    scheduler = make_scheduler("PNDMScheduler", SD15_SCHEDULER, **SD15_SCHEDULER_UNUSED)
    return make_sd(out_dir, SD15_TEXT_ENCODER, SD15_UNET, SD15_VAE, scheduler, SD15_README)


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
    shutil.copytree(TINY_SD / "tokenizer", out_dir / "tokenizer")
    scheduler = make_scheduler("PNDMScheduler", SD15_SCHEDULER, **SD15_SCHEDULER_UNUSED)
    # fp16 files keep the folder at 2 GB.
    return make_sd(out_dir, SD15_FULL_TEXT_ENCODER, SD15_FULL_UNET, SD15_FULL_VAE, scheduler, None,
                   half=True)


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
# SD 2.1's scheduler config also carries skip_prk_steps=True. DDIM ignores
# it, but users who swap in PNDM need it (PNDM's default is False).
SD2_SCHEDULER_UNUSED = dict(skip_prk_steps=True)


SD2_README = """\
# tiny-sd2 (Stable Diffusion 2.x)

A tiny Stable Diffusion 2.x pipeline in diffusers format for tests and CPU smoke runs: SD 2.1's
architecture shrunk to about 15 MB, with random weights, so it produces noise, not pictures. What
sets it apart from `tiny-sd` (SD 1.5): an OpenCLIP-style text encoder (`gelu`, padding with `!`,
id 0), a UNet with per-block head counts and linear projections in its transformers, and a DDIM
scheduler with `v_prediction`. It samples at 64 px (8x8 latents); SD 2.1 works at 768 px.

It was made by `python tools/dev/make_tiny_model.py --family sd2 --out data/tiny-sd2 --model-only`,
which is deterministic. The tokenizer's `vocab.json` and `merges.txt` are copied from
`data/tiny-sd/tokenizer`: the real CLIP BPE tokenizer, converted from `bpe_simple_vocab_16e6.txt.gz`
of openai/CLIP (MIT licence, Copyright (c) 2021 OpenAI).
"""


def make_sd2(out_dir: Path) -> dict[str, int]:
    """Write a tiny SD 2.x pipeline folder (see :data:`MODEL_FAMILIES`)."""
    copy_clip_tokenizer(TINY_SD / "tokenizer", out_dir / "tokenizer", pad_token=OPENCLIP_PAD)
    scheduler = make_scheduler("DDIMScheduler", SD2_SCHEDULER, **SD2_SCHEDULER_UNUSED)
    return make_sd(out_dir, SD2_TEXT_ENCODER, SD2_UNET, SD2_VAE, scheduler, SD2_README)


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


# Keys of SDXL's scheduler config that Euler ignores but other schedulers
# read when users swap them in (DDIM, PNDM).
SDXL_SCHEDULER_UNUSED = dict(clip_sample=False, sample_max_value=1.0, set_alpha_to_one=False,
                             skip_prk_steps=True)


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

It was made by `python tools/dev/make_tiny_model.py --family sdxl --out data/tiny-sdxl --model-only`,
which is deterministic. Both tokenizers' `vocab.json` and `merges.txt` are copied from
`data/tiny-sd/tokenizer`: the real CLIP BPE tokenizer, converted from `bpe_simple_vocab_16e6.txt.gz`
of openai/CLIP (MIT licence, Copyright (c) 2021 OpenAI).
"""


def make_sdxl(out_dir: Path, text_encoder: dict = SDXL_TEXT_ENCODER,
              text_encoder_2: dict = SDXL_TEXT_ENCODER_2, unet: dict = SDXL_UNET,
              vae: dict = SDXL_VAE, readme: str | None = SDXL_README,
              half: bool = False) -> dict[str, int]:
    """Write an SDXL pipeline folder (see :data:`MODEL_FAMILIES`); the tiny one by default.

    Args:
        half: Store the UNet and VAE in fp16 (see :func:`make_sd`).
    """
    models = {
        "text_encoder": make_text_encoder("text_encoder", text_encoder),
        "text_encoder_2": make_text_encoder("text_encoder_2", text_encoder_2, with_projection=True),
        "unet": make_unet(unet),
        "vae": make_vae(vae),
    }
    if half:
        models["unet"].half()
        models["vae"].half()
    scheduler = make_scheduler("EulerDiscreteScheduler", SDXL_SCHEDULER, **SDXL_SCHEDULER_UNUSED)
    copy_clip_tokenizer(TINY_SD / "tokenizer", out_dir / "tokenizer", pad_token=CLIP_EOS)
    copy_clip_tokenizer(TINY_SD / "tokenizer", out_dir / "tokenizer_2", pad_token=OPENCLIP_PAD)
    # No watermark: a tiny model's output needs none, and the pipeline would
    # otherwise turn it on whenever invisible-watermark happens to be installed.
    return save_pipeline(out_dir, "StableDiffusionXLPipeline", models, scheduler,
                         ("tokenizer", "tokenizer_2"), ("feature_extractor", "image_encoder"),
                         readme, add_watermarker=False, force_zeros_for_empty_prompt=True)


# Full-size SDXL 1.0 architecture, random weights (for GPU benchmarks only):
# CLIP ViT-L and OpenCLIP bigG text encoders, the 2.6B-parameter UNet at
# 1024 px (128x128 latents).
SDXL_FULL_TEXT_ENCODER = dict(SDXL_TEXT_ENCODER, hidden_size=768, intermediate_size=3072,
                              num_hidden_layers=12, num_attention_heads=12, projection_dim=768)
SDXL_FULL_TEXT_ENCODER_2 = dict(SDXL_TEXT_ENCODER_2, hidden_size=1280, intermediate_size=5120,
                                num_hidden_layers=32, num_attention_heads=20, projection_dim=1280)
SDXL_FULL_ADDITION_TIME_EMBED_DIM = 256
SDXL_FULL_UNET = dict(
    SDXL_UNET,
    sample_size=128,  # 1024 px
    block_out_channels=(320, 640, 1280),
    layers_per_block=2,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    transformer_layers_per_block=(1, 2, 10),
    attention_head_dim=(5, 10, 20),
    cross_attention_dim=SDXL_FULL_TEXT_ENCODER["hidden_size"] + SDXL_FULL_TEXT_ENCODER_2["hidden_size"],
    addition_time_embed_dim=SDXL_FULL_ADDITION_TIME_EMBED_DIM,
    projection_class_embeddings_input_dim=(
        SDXL_NUM_TIME_IDS * SDXL_FULL_ADDITION_TIME_EMBED_DIM + SDXL_FULL_TEXT_ENCODER_2["projection_dim"]
    ),
)
SDXL_FULL_VAE = dict(SDXL_VAE, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                     sample_size=1024)


def make_sdxl_full_random(out_dir: Path) -> dict[str, int]:
    """SDXL 1.0's exact architecture and sizes with random weights: stands in
    for ``stable-diffusion-xl-base-1.0`` in GPU speed and memory tests, as
    :func:`make_sd15_full_random` does for SD 1.5."""
    return make_sdxl(out_dir, SDXL_FULL_TEXT_ENCODER, SDXL_FULL_TEXT_ENCODER_2, SDXL_FULL_UNET,
                     SDXL_FULL_VAE, readme=None, half=True)


# Model families, by their name on the command line. Each writes a complete
# pipeline folder into the empty folder it is given and returns the parameter
# count per model.
MODEL_FAMILIES: dict[str, Callable[[Path], dict[str, int]]] = {
    "sd15": make_sd15,
    "sd15-full-random": make_sd15_full_random,
    "sd2": make_sd2,
    "sdxl": make_sdxl,
    "sdxl-full-random": make_sdxl_full_random,
}
