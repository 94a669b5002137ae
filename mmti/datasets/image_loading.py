"""Finding and decoding concept images: bounded memory, every PIL mode faithfully to RGB.

A concept folder is a handful of user files: phone photos, scans, renders,
exports of other tools. Each is decoded once and kept in memory for the
whole run, so this module

* refuses hostile or absurd files *before* decoding them: more than
  ``MAX_PIXELS`` pixels (PIL's own decompression-bomb refusal is turned into
  the same one-line message), or an aspect ratio above ``MAX_ASPECT_RATIO``
  (a 300000x1 strip would become a 19-million-pixel-wide image at 64 px);
* decodes reduced where the format allows it (JPEG's DCT scaling via
  ``Image.draft``) and keeps a copy reduced to the shorter side the training
  pipeline needs, not the full-size decode (30 phone photos are 2 GB);
* converts every mode to RGB by its real range, so a mid-grey 16-bit or
  float image stays mid-grey instead of coming out white or black.

Every refusal is one line that names the file and the fix
(:class:`ImageError`, a ``ValueError`` and a ``UserError``).
"""
import logging
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mmengine.logging import print_log
from PIL import Image, ImageOps, UnidentifiedImageError

from mmti.utils import UserError, one_line

IMAGE_EXTENSIONS = frozenset({'.png', '.jpg', '.jpeg', '.webp', '.bmp', '.gif', '.tif', '.tiff'})

#: Most pixels decoded for one image (8192 x 8192, ~200 MB as RGB). JPEGs
#: count after reduced decoding; PIL itself refuses any file declaring more
#: than twice ``Image.MAX_IMAGE_PIXELS`` (~179 MP) before it can be reduced.
MAX_PIXELS = 8192 * 8192
#: Longest side / shorter side above which an image is refused. A square crop
#: of an 8:1 panorama already shows only an eighth of it; beyond that the file
#: is rather a strip, a banner or a corrupt header.
MAX_ASPECT_RATIO = 8.0
#: Shorter side images are kept at when the pipeline does not start with a
#: resize that says what it needs (see ``TextualInversionDataset``).
DEFAULT_SHORTER_SIDE = 1024

# Value ranges a high-bit-depth image is read in: the first that holds all its
# pixels wins (so 8-bit data stored in 32 bits keeps its brightness), and an
# image outside all of them is stretched from its own minimum to maximum.
_INT_RANGES = ((0, 255), (0, 65535))
_FLOAT_RANGES = ((0.0, 1.0), (-1.0, 1.0), (0.0, 255.0), (0.0, 65535.0))
_UNSIGNED_16 = ('I;16', 'I;16L', 'I;16B', 'I;16N')
_ALPHA_MODES = ('RGBA', 'RGBa', 'LA', 'La', 'PA')
_MEGA = 1_000_000


class ImageError(UserError, ValueError):
    """A concept image that cannot be used; the message names the file and the fix."""


@dataclass
class DecodedImage:
    """An image as the dataset keeps it, and what was done to get there.

    Attributes:
        image: Upright RGB, reduced to the requested shorter side if it was larger.
        original_size: ``(width, height)`` of the upright file before any reduction.
        decoded_size: ``(width, height)`` upright as decoded (smaller than
            ``original_size`` when the JPEG decoder reduced it).
        mode: The file's PIL mode.
        range_note: How a high-bit-depth image was scaled to 8 bits, or ''.
    """

    image: Image.Image
    original_size: tuple[int, int]
    decoded_size: tuple[int, int]
    mode: str
    range_note: str = ''

    @property
    def reduced(self) -> bool:
        return self.image.size != self.original_size


# --------------------------------------------------------------------------- the folder


@dataclass
class ConceptFolder:
    """What a concept folder holds: images, and everything skipped with why."""

    root: Path
    images: list[Path]
    other_files: list[Path]  # not an image by extension (captions, notes, ...)
    hidden: list[Path]       # .DS_Store, ._photo.jpg (macOS), .thumbs ...
    folders: list[Path]      # sub-folders (and broken links): not searched

    def summary(self) -> str:
        """One line: the images used and the entries skipped, by reason."""
        skipped = [(self.other_files, 'not an image by extension'), (self.hidden, 'hidden'),
                   (self.folders, 'folders or broken links, not searched')]
        parts = [f'{len(paths)} {why} ({_names(paths)})' for paths, why in skipped if paths]
        line = (f'Concept folder {self.root}: using {len(self.images)} images '
                f'({_names(self.images)})')
        return line + (f'; skipped {"; ".join(parts)}' if parts else '')


def _names(paths: list[Path], limit: int = 8) -> str:
    names = [p.name for p in paths[:limit]]
    more = f', +{len(paths) - limit} more' if len(paths) > limit else ''
    return ', '.join(names) + more


def scan_concept_folder(data_root: str | os.PathLike) -> ConceptFolder:
    """Sort the entries of ``data_root`` into images and skipped entries."""
    root = Path(data_root)
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f'Concept folder {root} is a file, not a folder; set data_root '
                                 'to the folder that holds the images.')
    if not root.is_dir():
        raise FileNotFoundError(
            f'Concept folder {root} does not exist; set data_root to a folder '
            'with 3-5 images of your concept.')
    folder = ConceptFolder(root, [], [], [], [])
    for path in sorted(root.iterdir()):
        if path.name.startswith('.'):
            folder.hidden.append(path)
        elif not path.is_file():
            folder.folders.append(path)
        elif path.suffix.lower() in IMAGE_EXTENSIONS:
            folder.images.append(path)
        else:
            folder.other_files.append(path)
    return folder


def list_concept_images(data_root: str | os.PathLike, log: bool = True) -> list[Path]:
    """Image files directly under ``data_root`` (by extension), sorted.

    Hidden entries, sub-folders and files of other extensions are skipped;
    with ``log`` one INFO line says which files are used and which were
    skipped and why.
    """
    folder = scan_concept_folder(data_root)
    if not folder.images:
        found = sorted(p.name for p in folder.other_files + folder.folders)[:20]
        raise ValueError(
            f'Concept folder {folder.root} has no images (looked for '
            f'{", ".join(sorted(IMAGE_EXTENSIONS))}); found: {found or "nothing"}.')
    if log:
        print_log(folder.summary(), logger='current', level=logging.INFO)
    return folder.images


# --------------------------------------------------------------------------- one image


def load_rgb(path: str | os.PathLike, shorter_side: int | None = None, **kwargs) -> Image.Image:
    """Decode an image upright (EXIF orientation applied) as RGB.

    Args:
        path: The image file.
        shorter_side: Keep at most this many pixels on the shorter side
            (reduced with LANCZOS); None keeps the full size.
        **kwargs: ``resample``, ``max_pixels``, ``max_aspect_ratio`` of
            :func:`decode_image`.

    Raises:
        ImageError: The file is unreadable, too large or too elongated; the
            one-line message names it and the fix.
    """
    return decode_image(path, shorter_side, **kwargs).image


def decode_image(path: str | os.PathLike,
                 shorter_side: int | None = None,
                 resample: Image.Resampling = Image.Resampling.LANCZOS,
                 max_pixels: int = MAX_PIXELS,
                 max_aspect_ratio: float = MAX_ASPECT_RATIO) -> DecodedImage:
    """Decode ``path`` upright as RGB, reduced to ``shorter_side`` if larger.

    The reduction is the one ``ResizeShorterSide(shorter_side)`` makes (same
    size rule; pass its filter as ``resample``), so a pipeline starting with
    that transform gives the same pixels as from the full-size image. Only a
    JPEG at least 4x larger than needed is decoded reduced (to at least twice
    the needed size, then resampled), which changes its pixels slightly.

    Args:
        path: The image file.
        shorter_side: Shorter side to keep at most; None keeps the full size.
        resample: Filter of the reduction.
        max_pixels: Most pixels to decode (after JPEG's reduced decoding).
        max_aspect_ratio: Longest side / shorter side allowed.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            # Sizes are checked below against our own limit, with a message that names the file.
            warnings.simplefilter('ignore', Image.DecompressionBombWarning)
            img = Image.open(path)
    except Image.DecompressionBombError as err:
        found = re.search(r'\((\d+) pixels\)', str(err))
        declared = f'{int(found.group(1)) / _MEGA:.0f} megapixels' if found else 'more pixels'
        raise ImageError(f'Image {path} declares {declared}, more than PIL decodes safely '
                         f'({2 * Image.MAX_IMAGE_PIXELS / _MEGA:.0f} MP; a decompression bomb '
                         f'or a corrupt header); {_FIX_SIZE}') from None
    except Exception as err:  # Pillow raises almost anything on a malformed header
        raise _unreadable(path, err) from err
    with img:
        _check_shape(path, img.size, max_aspect_ratio)
        full = img.size
        try:
            if shorter_side and img.format == 'JPEG' and min(full) >= 4 * shorter_side:
                # DCT-domain reduction by 2, 4 or 8: decodes a fraction of the pixels.
                img.draft(None, (2 * shorter_side, 2 * shorter_side))
        except Exception as err:
            raise _unreadable(path, err) from err
        w, h = img.size
        if w * h > max_pixels:
            raise ImageError(f'Image {path} is {w}x{h} pixels ({w * h / _MEGA:.0f} MP), more than '
                             f'the {max_pixels / _MEGA:.0f} MP mmti decodes; {_FIX_SIZE}')
        try:
            img.load()
            stored = img.size
            ImageOps.exif_transpose(img, in_place=True)  # no full-size copy
            # EXIF rotation by 90 degrees swaps the sides of the original too.
            original = full if img.size == stored else (full[1], full[0])
            mode, decoded_size = img.mode, img.size
            reduce_to = (shorter_side_size(img.size, shorter_side)
                         if shorter_side and min(img.size) > shorter_side else None)
            if reduce_to and mode == 'RGB' and 'transparency' not in img.info:
                # Same pixels as converting first (a plain copy), without the copy.
                return DecodedImage(img.resize(reduce_to, resample), original, decoded_size, mode)
            rgb, note = to_rgb(img, path)
        except ImageError:
            raise
        except Exception as err:  # truncated data, bad chunks, unknown compression ...
            raise _unreadable(path, err) from err
    if reduce_to:
        rgb = rgb.resize(reduce_to, resample)
    return DecodedImage(rgb, original, decoded_size, mode, note)


_FIX_SIZE = ('downscale it (e.g. to 2048 px on the shorter side) or remove it from the '
             'concept folder.')


def _unreadable(path: Path, err: Exception) -> ImageError:
    reason = one_line(err)
    if isinstance(err, UnidentifiedImageError):  # its message repeats the path
        empty = path.is_file() and path.stat().st_size == 0
        reason = 'the file is empty' if empty else 'its contents are no image format Pillow knows'
    return ImageError(f'Cannot read image {path}: {reason}. Re-save it or remove it '
                      'from the concept folder.')


def _check_shape(path: Path, size: tuple[int, int], max_aspect_ratio: float) -> None:
    w, h = size
    ratio = max(w, h) / max(1, min(w, h))
    if ratio > max_aspect_ratio:
        shown = f'{ratio:.3g}' if ratio < 1000 else f'{ratio:.0f}'
        raise ImageError(f'Image {path} is {w}x{h} pixels, an aspect ratio of {shown}:1 (more '
                         f'than {max_aspect_ratio:g}:1 is refused: a square crop would show a '
                         'sliver of it); crop it nearer to a square or remove it from the '
                         'concept folder.')


def shorter_side_size(size: tuple[int, int], shorter_side: int) -> tuple[int, int]:
    """``(width, height)`` scaled to ``shorter_side``: ResizeShorterSide's rule."""
    w, h = size
    scale = shorter_side / min(w, h)
    return max(shorter_side, round(w * scale)), max(shorter_side, round(h * scale))


# --------------------------------------------------------------------------- modes


def to_rgb(img: Image.Image, path: str | os.PathLike = '<image>') -> tuple[Image.Image, str]:
    """``img`` as RGB with the same appearance, and how its range was read.

    Transparent pixels are shown on white. 16-bit, 32-bit and float grey
    images are scaled by their real range (see :func:`_to_8bit_grey`) rather
    than clipped. ``path`` only names the image in errors.

    Returns:
        The RGB image and a note such as ``'I;16 read as 0..65535'`` ('' for
        8-bit modes).
    """
    note = ''
    alpha = None
    if img.mode in ('I', 'F') or img.mode.startswith(('I;', 'F;')):
        alpha = _transparency_mask(img)
        img, note = _to_8bit_grey(img, path)
    elif img.mode in ('RGBa', 'La'):  # premultiplied alpha: undo it first
        img = img.convert(img.mode.upper())
    if alpha is not None:
        img = img.convert('RGBA')
        img.putalpha(alpha)
    if img.mode in _ALPHA_MODES or 'transparency' in img.info:
        # Transparent pixels hide arbitrary colours; show them as white.
        rgba = img.convert('RGBA')
        canvas = Image.new('RGBA', rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert('RGB'), note
    try:
        return img.convert('RGB'), note
    except ValueError as err:  # a mode Pillow cannot turn into RGB
        raise ImageError(f'Cannot read image {path}: mode {img.mode} has no conversion to RGB '
                         f'({one_line(err)}); re-save it as 8-bit RGB (PNG or JPEG) or remove it '
                         'from the concept folder.') from err


def _transparency_mask(img: Image.Image) -> Image.Image | None:
    """Alpha of a high-bit-depth grey image with a transparent value (PNG tRNS)."""
    key = img.info.get('transparency')
    if not isinstance(key, int):
        return None
    opaque = np.asarray(img) != key
    return Image.fromarray(opaque.astype(np.uint8) * 255)


def _to_8bit_grey(img: Image.Image, path: Path) -> tuple[Image.Image, str]:
    """Scale a 16-bit, 32-bit or float grey image to 'L' by its real range.

    16-bit modes are divided by 257 (65535 -> 255, mid-grey stays mid-grey).
    'I' and 'F' are read in the first of the usual ranges that holds every
    pixel ('I': 0..255, 0..65535; 'F': 0..1, -1..1, 0..255, 0..65535), else
    stretched from their own minimum to maximum. Pillow's own conversion
    clips instead, turning a 16-bit image white.
    """
    pixels = np.asarray(img)
    if img.mode in _UNSIGNED_16:
        lo, hi = 0.0, 65535.0
    else:
        if pixels.dtype.kind == 'f' and not np.isfinite(pixels).all():
            raise ImageError(f'Image {path} (mode {img.mode}) has NaN or infinite pixel values; '
                             're-save it with finite values or remove it from the concept folder.')
        low, high = float(pixels.min()), float(pixels.max())
        ranges = _FLOAT_RANGES if pixels.dtype.kind == 'f' else _INT_RANGES
        lo, hi = next(((a, b) for a, b in ranges if a <= low and high <= b), (low, high))
    note = f'{img.mode} read as {lo:g}..{hi:g}'
    scaled = pixels.astype(np.float32)  # a copy: the decoded array is read-only
    scaled -= lo
    scaled *= 255.0 / (hi - lo) if hi > lo else 0.0
    np.rint(scaled, out=scaled)
    np.clip(scaled, 0, 255, out=scaled)
    grey = Image.fromarray(scaled.astype(np.uint8))
    grey.info.update({k: v for k, v in img.info.items() if k != 'transparency'})
    return grey, note
