"""Caption templates: ``'a photo of a {}'`` with ``{}`` for the placeholder."""
import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

# Shipped inside the package (package data), so a wheel install finds them.
BUILTIN_TEMPLATES = {'object': 'object.txt', 'style': 'style.txt'}


def builtin_template_lines(learnable_property: str) -> list[str]:
    """The built-in list of ``learnable_property``, read from the package's data."""
    text = (resources.files(__package__) / 'caption_templates' /
            BUILTIN_TEMPLATES[learnable_property]).read_text(encoding='utf-8')
    return _lines(text)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_template_file(path: str | os.PathLike) -> list[str]:
    """One template per non-empty line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'Template file {path} does not exist.')
    return _lines(path.read_text(encoding='utf-8'))


def load_templates(learnable_property: str = 'object',
                   templates: str | os.PathLike | Sequence[str] | None = None) -> list[str]:
    """Templates from an explicit file/list, else the paper's built-in list.

    Args:
        learnable_property: 'object' (27 templates) or 'style' (19).
        templates: A template file or a list of templates; overrides
            ``learnable_property``.
    """
    if learnable_property not in BUILTIN_TEMPLATES:
        raise ValueError(f'learnable_property must be one of {sorted(BUILTIN_TEMPLATES)}, '
                         f'got {learnable_property!r}.')
    if templates is None:
        found = builtin_template_lines(learnable_property)
    elif isinstance(templates, str) and '{}' in templates and not Path(templates).is_file():
        found = [templates]  # one template given inline
    elif isinstance(templates, (str, os.PathLike)):
        found = read_template_file(templates)
    else:
        found = [str(t) for t in templates]
    if not found:
        raise ValueError('No caption templates given; add lines like "a photo of a {}".')
    missing = [t for t in found if '{}' not in t]
    if missing:
        raise ValueError(
            f'Caption template(s) without "{{}}" (where the placeholder goes): {missing[:3]}. '
            'Write them like "a photo of a {}".')
    return found


def fill_template(template: str, token: str) -> str:
    # str.replace, not str.format: templates may contain other braces.
    return template.replace('{}', token)
