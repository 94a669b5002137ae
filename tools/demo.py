"""The Quick start demo: learn <cat-toy> on the bundled tiny model, then sample.

Runs tools/train.py on configs/textual_inversion_tiny.py (CPU, about a
minute), then tools/infer.py with the learned token, and prints where
everything went. The tiny model has random weights, so the pictures show the
machinery working, not a recognisable cat toy.
"""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / 'configs' / 'textual_inversion_tiny.py'
WORK_DIR = Path('work_dirs') / 'textual_inversion_tiny'


def run(*args: str) -> None:
    env = dict(os.environ, HF_HUB_OFFLINE='1')
    subprocess.run([sys.executable, *args], check=True, env=env, cwd=ROOT)


def main() -> None:
    run('tools/train.py', str(CONFIG), '--work-dir', str(WORK_DIR))
    embedding = WORK_DIR / 'learned_embeds.safetensors'
    out_dir = WORK_DIR / 'demo_samples'
    run('tools/infer.py', str(CONFIG), '--embeddings', str(embedding),
        '--prompt', 'a <cat-toy> bag', '--prompt', 'a photo of a <cat-toy> on the beach',
        '--num-images', '2', '--steps', '20', '--seed', '0', '--out-dir', str(out_dir))
    print('\nDemo finished.')
    print(f'  learned embedding: {ROOT / embedding}')
    print(f'  validation grids:  {ROOT / WORK_DIR / "samples"}')
    print(f'  sampled images:    {ROOT / out_dir}')


if __name__ == '__main__':
    main()
