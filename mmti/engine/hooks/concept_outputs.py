"""What a many-concept run leaves for each concept, and its summary table."""
from pathlib import Path

from mmti.datasets.concept_specs import concept_folder_name
from mmti.datasets.templates import fill_template
from mmti.evaluation.plot import line_chart
from mmti.fileio import atomic_write
from .validation_sample_hook import labelled_grid

CONCEPTS_DIR = 'concepts'
SUMMARY_FILE = 'concepts.md'
#: A concept's rows; one that did not learn keeps them under another name, so
#: no file called learned is a concept that was not.
LEARNED_FILE = 'learned_embeds.safetensors'
NOT_LEARNED_FILE = 'not_learned_embeds.safetensors'


def concept_embedding_file(work_dir, token: str, stop: dict | None) -> Path:
    """Where a concept's rows are written, by how it ended."""
    learned = (stop or {}).get('kind') != 'not_learning'
    return concept_dir(work_dir, token) / (LEARNED_FILE if learned else NOT_LEARNED_FILE)


def concept_dir(work_dir, token: str) -> Path:
    """``<work_dir>/concepts/<name>``: one concept's outputs."""
    return Path(work_dir) / CONCEPTS_DIR / concept_folder_name(token)


def write_concept_outputs(runner, model, tokens: list[str], series: dict[str, dict],
                          stops: dict[str, dict]) -> list[Path]:
    """Write the outputs of concepts that finished at the same step.

    For each: ``concepts/<name>/learned_embeds.safetensors`` holds that
    concept alone, in the model's default format (diffusers', A1111's and
    ComfyUI's loaders take one concept per file; ``not_learned_embeds`` for
    a concept whose rows did not learn); ``samples.png`` renders the
    validation prompts with its token; ``curves.png`` plots its learning
    signal. The grids of all of them are rendered in one batch
    (``val_step_groups``: each as it would be alone).
    """
    folders = [concept_dir(runner.work_dir, token) for token in tokens]
    for token, folder in zip(tokens, folders):
        folder.mkdir(parents=True, exist_ok=True)
        step = stops[token]['step']
        embedding = model.save_embeddings(
            str(concept_embedding_file(runner.work_dir, token, stops[token])), tokens=[token],
            step=step)
        runner.logger.info(f'Saved {token} ({step} steps) to {embedding}')
    templates = list(getattr(model, 'validation_templates', []))
    if templates:
        prompts = [[fill_template(t, token) for t in templates] for token in tokens]
        saved = dict(model.validation_cfg)
        model.validation_cfg = {'show_progress': False, **saved}
        try:
            grids = model.val_step_groups(prompts)
        finally:
            model.validation_cfg = saved
        for token, folder, group, results in zip(tokens, folders, prompts, grids):
            grid = labelled_grid([r['sample'] for r in results], group, stops[token]['step'])
            with atomic_write(folder / 'samples.png') as tmp:
                grid.save(tmp, format='PNG')
    for token, folder in zip(tokens, folders):
        _write_curves(folder / 'curves.png', token, series.get(token), stops[token])
    return folders


def _write_curves(path: Path, token: str, series: dict | None, stop: dict) -> None:
    if series and series.get('steps'):
        line_chart([dict(title=f'learning signal (loss on a fixed batch): {stop["reason"]}',
                         lines=[dict(label='learning signal', x=series['steps'],
                                     y=series['values'], color=(214, 39, 40), width=2)])],
                   path, title=f'{token}: stopped at its step {stop["step"]}')


def write_summary(work_dir, rows: list[dict]) -> Path:
    """``concepts.md``: concept, steps, stop reason, learning signal (and any
    similarity, gap closed and text ratio the rows carry), one line per concept."""
    extra = [k for k in ('image_similarity', 'text_similarity', 'gap_closed', 'text_ratio')
             if any(k in r for r in rows)]
    header = ['concept', 'steps', 'stopped because', 'learning signal (start -> end)', *extra]
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for row in rows:
        signal = ('' if row.get('signal_start') is None
                  else f"{row['signal_start']:.4f} -> {row['signal_end']:.4f}")
        reason = row.get('stop') or ('not started' if row.get('status') == 'waiting' else '')
        cells = [row['concept'], str(row['steps']), reason, signal,
                 *(_number(k, row.get(k)) for k in extra)]
        lines.append('| ' + ' | '.join(cells) + ' |')
    path = Path(work_dir) / SUMMARY_FILE
    with atomic_write(path) as tmp:
        tmp.write_text('\n'.join(lines) + '\n', encoding='utf-8')
    return path


def _number(key: str, value) -> str:
    # The ratios read as tools/evaluate.py's verdict states them: in percent.
    if not isinstance(value, float):
        return ''
    return f'{value:.0%}' if key in ('gap_closed', 'text_ratio') else f'{value:.4f}'
