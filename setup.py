"""mmti: config-driven Textual Inversion for Stable Diffusion, on mmengine."""
from pathlib import Path

from setuptools import find_namespace_packages, setup

ROOT = Path(__file__).parent
version = {}
exec((ROOT / 'mmti' / 'version.py').read_text(), version)

setup(
    name='mmti',
    version=version['__version__'],
    description='Textual Inversion for Stable Diffusion: config-driven, on mmengine and diffusers',
    long_description=(ROOT / 'README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.10',
    license_files=['LICENSE'],
    # Namespace discovery so data folders (caption_templates) count as packages.
    packages=find_namespace_packages(include=['mmti', 'mmti.*'], exclude=['*.__pycache__']),
    # The built-in caption templates are read at run time (importlib.resources).
    package_data={'mmti.datasets.caption_templates': ['*.txt', '*.md']},
    include_package_data=True,
    install_requires=[
        # 2.13.0 is the CPU wheel on our build machines; any >= 2.6 works.
        'torch>=2.6',
        # mmti works around 0.10.7's launcher and resume with torch >= 2.6.
        'mmengine>=0.10.7,<0.11',
        'diffusers>=0.35,<1',
        # transformers 5 flattened CLIPTextModel; mmti only uses public accessors.
        'transformers>=5,<6',
        'accelerate>=1.0',
        'safetensors>=0.4',
        'pillow>=10',
        'numpy>=1.26',
    ],
    entry_points={'console_scripts': [
        'mmti-train = mmti.cli.train:cli',
        'mmti-infer = mmti.cli.infer:cli',
        'mmti-eval = mmti.cli.evaluate:cli',
        'mmti-test = mmti.cli.test:cli',
        'mmti-convert = mmti.cli.convert_embeddings:cli',
    ]},
    extras_require={
        'tests': ['pytest>=8'],
        # Only to regenerate data/tiny-sd's tokenizer from CLIP's BPE file.
        'tools': ['openai-clip==1.0.1'],
    },
)
