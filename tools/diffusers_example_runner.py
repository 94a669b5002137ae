"""Run one of diffusers' example scripts, unmodified, where torchvision is not installed.

    python tools/diffusers_example_runner.py SCRIPT [script arguments ...]

diffusers' ``examples/textual_inversion/textual_inversion.py`` imports
torchvision for one thing, ``transforms.RandomHorizontalFlip`` on a PIL image;
torchvision cannot be installed beside this project's CPU torch (it breaks
transformers). This launcher supplies a stand-in of our own, a ``torchvision``
package whose only content is that flip (:data:`TRANSFORMS_SOURCE`), and runs
the script as ``python SCRIPT ...`` would (``__main__``, its own folder on
``sys.path``, its own ``sys.argv``).

Why not just put the stand-in on ``PYTHONPATH``: transformers and diffusers
decide whether torchvision is installed by whether ``import torchvision``
would find something, and if so import parts of it (transformers' image
utilities import ``InterpolationMode`` while loading ``CLIPTextModel``). So
the launcher first lets both libraries look while no torchvision is findable
(both cache the answer, "not installed", which is the truth), and only then
puts the stand-in first on ``sys.path`` for the script's own import.
"""
import runpy
import sys
import tempfile
from pathlib import Path

SHIM_NOTE = ('diffusers script run through tools/diffusers_example_runner.py: torchvision is '
             "replaced by mmti's stand-in (transforms.RandomHorizontalFlip only, a PIL flip)")

INIT_SOURCE = '"""mmti\'s stand-in for torchvision: only transforms.RandomHorizontalFlip."""\n'

# torchvision's contract for a PIL image: flipped left-right with probability
# p. torchvision draws from torch's generator, this from Python's `random`;
# the script's set_seed seeds both, so runs repeat, but the flips of a seed
# differ from real torchvision's (same odds, other draws).
TRANSFORMS_SOURCE = '''"""torchvision.transforms as diffusers' textual_inversion example uses it."""
import random

from PIL import Image


class RandomHorizontalFlip:
    def __init__(self, p=0.5):
        self.p = p

    def __call__(self, image):
        if random.random() < self.p:
            return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return image
'''


def write_torchvision_shim(folder: Path) -> Path:
    """Write the stand-in package into ``folder``; returns ``folder`` (the sys.path entry)."""
    package = Path(folder) / 'torchvision'
    package.mkdir(parents=True, exist_ok=True)
    (package / '__init__.py').write_text(INIT_SOURCE)
    (package / 'transforms.py').write_text(TRANSFORMS_SOURCE)
    return Path(folder)


def settle_torchvision_checks() -> None:
    """Let transformers and diffusers record "no torchvision" before the stand-in is findable."""
    import diffusers.utils.import_utils as diffusers_imports
    import transformers.utils.import_utils as transformers_imports
    if (transformers_imports.is_torchvision_available()
            or diffusers_imports.is_torchvision_available()):
        raise SystemExit('a real torchvision is installed here; run the diffusers script directly, '
                         'without tools/diffusers_example_runner.py.')


def run_script(script: Path, args: list[str], shim_folder: Path) -> None:
    """Run ``script`` as ``__main__`` with ``args``, the stand-in first on ``sys.path``."""
    settle_torchvision_checks()
    sys.path[0] = str(script.resolve().parent)  # as `python SCRIPT` would have it
    sys.path.insert(0, str(write_torchvision_shim(shim_folder)))
    sys.argv = [str(script), *args]
    runpy.run_path(str(script), run_name='__main__')


def main() -> None:
    if len(sys.argv) < 2 or not Path(sys.argv[1]).is_file():
        raise SystemExit('usage: python tools/diffusers_example_runner.py SCRIPT [args ...] '
                         '(SCRIPT: an existing diffusers example, e.g. '
                         'examples/textual_inversion/textual_inversion.py)')
    print(SHIM_NOTE, file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix='mmti_torchvision_shim_') as folder:
        run_script(Path(sys.argv[1]), sys.argv[2:], Path(folder))


if __name__ == '__main__':
    main()
