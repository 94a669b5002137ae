"""A concept's evaluation inputs, read from its folders as training reads
them (EXIF orientation applied, transparency on white): the training images,
the held-out images and, when asked, the held-out images' captions as
reconstruction prompts. tools/evaluate.py, tools/test.py and
``ConceptQueueHook`` read them here."""
import os.path as osp
from pathlib import Path

from mmti.utils import UserError

#: Written in a held-out folder setting, the concept's training folder: the
#: held-out images then follow the concept a run trains (a config used for
#: another concept with --cfg-options ...data_root=...), not the config's own.
DATA_ROOT_FIELD = '{data_root}'


def resolve_held_out_dir(held_out_dir: str | None, concept_dir: str | None) -> str | None:
    """``held_out_dir`` with ``{data_root}`` replaced by ``concept_dir``."""
    if not isinstance(held_out_dir, str) or DATA_ROOT_FIELD not in held_out_dir:
        return held_out_dir
    if not concept_dir:
        raise UserError(f'held_out_dir {held_out_dir} names {DATA_ROOT_FIELD}, the training '
                        'folder, but none is given; set the training data_root or --concept-dir.')
    # '..' as the file system reads it: from the real folder when the
    # training folder is a link (a link's '..' is its target's parent).
    base = str(concept_dir)
    if osp.realpath(base) != osp.abspath(base):
        base = osp.realpath(base)
    return osp.normpath(held_out_dir.replace(DATA_ROOT_FIELD, base))


def image_files(folder: str | None, what: str, log: bool = True) -> list[Path]:
    """The images of ``folder`` as training lists them; ``what`` names the option.

    With ``log`` the folder's "using N images" line is logged; a second look
    at the same folder (or a check before the loading that logs it) passes
    ``log=False`` so the line is shown once.
    """
    from mmti.datasets.textual_inversion_dataset import list_concept_images
    if not folder or not Path(folder).is_dir():
        raise UserError(f'{what} {folder} does not exist or is not a folder; pass a folder of '
                        'images of the concept.')
    try:
        return list_concept_images(folder, log=log)
    except (ValueError, OSError) as error:
        raise UserError(f'{what}: {error}') from None


def load_images(folder: str, what: str, log: bool = True) -> list:
    """The images of ``folder``, upright and RGB (alpha on white), as training reads them."""
    from mmti.datasets.textual_inversion_dataset import load_rgb
    return [load_rgb(file) for file in image_files(folder, what, log=log)]


#: How the command-line tools name the settings; training hooks name their config keys.
OPTION_NAMES = {'concept_dir': '--concept-dir', 'held_out_dir': '--held-out-dir',
                'reconstruct': '--reconstruct-held-out-captions'}


def held_out_captions(folder: str | None, names: dict = OPTION_NAMES) -> list[str]:
    """The first line of each held-out image's caption file, in image order."""
    if not folder:
        raise UserError(f'{names["reconstruct"]} needs {names["held_out_dir"]} (images with '
                        'caption files beside them).')
    files = image_files(folder, names['held_out_dir'], log=False)  # load_images logged it
    from mmti.datasets.textual_inversion_dataset import caption_file, read_caption_file
    for image in files:
        if not caption_file(image).is_file():
            raise UserError(f'{names["reconstruct"]}: held-out image {image} has no '
                            f'caption file {image.with_suffix(".txt").name} beside it (a line '
                            'like "a {} on a red sofa").')
    return [read_caption_file(image)[0] for image in files]


def concept_inputs(concept_dir: str, held_out_dir: str | None = None,
                   reconstruct_held_out_captions: bool = False, log: bool = True,
                   names: dict = OPTION_NAMES) -> dict:
    """Keyword arguments of :func:`~mmti.evaluation.evaluate_concept` for one concept.

    ``training_images`` and ``held_out_images`` (None without a held-out
    folder), and with ``reconstruct_held_out_captions`` the held-out
    captions as ``reconstruction_prompt`` (they override any other).
    ``log=False`` leaves out the folders' "using N images" lines; ``names``
    says where each setting came from, for messages.
    """
    held_out_dir = resolve_held_out_dir(held_out_dir, concept_dir)
    inputs = {'training_images': load_images(concept_dir, names['concept_dir'], log),
              'held_out_images': (load_images(held_out_dir, names['held_out_dir'], log)
                                  if held_out_dir else None)}
    if reconstruct_held_out_captions:
        inputs['reconstruction_prompt'] = held_out_captions(held_out_dir, names)
    return inputs
