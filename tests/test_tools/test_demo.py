"""tools/demo.py, the Quick start: Textual Inversion learns a held-out toy-world concept.

One short run (fixed seeds) through the public entry point: train, sample,
grid, evaluate. The learned word must draw the concept much more like its
training images than the initializer word "star" does, and still follow the
edit prompts.
"""
import pytest
import json

from PIL import Image
from tool_runner import assert_quiet, concept_folder_lines, run_tool


@pytest.mark.slow
def test_demo_learns_the_concept_and_writes_grid_and_metrics(tmp_path):
    work_dir = tmp_path / 'demo'
    result = run_tool('tools/demo.py', '--work-dir', str(work_dir), '--max-iters', '200',
                      timeout=900)
    assert (work_dir / 'learned_embeds.safetensors').is_file()
    with Image.open(work_dir / 'demo_grid.png') as grid:
        # 5 rows (training images, the plain word "star", 3 prompts) of 5 cells of
        # 96 px under 14 px labels.
        assert grid.size == (5 * 96, 5 * (96 + 14))
        # Every cell was drawn: none is left the blank canvas colour.
        cells = [grid.crop((c * 96, r * 110 + 14, c * 96 + 96, r * 110 + 110))
                 for r in range(5) for c in range(5)]
        assert all(cell.convert('L').getextrema() != (255, 255) for cell in cells)
    metrics = json.loads((work_dir / 'evaluation' / 'metrics.json').read_text())
    rows = metrics['rows']
    learned, initializer, image_only = rows['learned'], rows['initializer'], rows['image only']
    assert metrics['settings']['clip'] == 'data/toy/clip_eval'
    gap = image_only['image_similarity'] - initializer['image_similarity']
    assert gap > 0.05, rows  # to the toy CLIP, the concept is more than "a star"
    closed = (learned['image_similarity'] - initializer['image_similarity']) / gap
    assert closed >= 0.5, rows
    # Edit prompts still work: the learned word does not drown the rest.
    assert learned['text_similarity'] >= 0.8 * initializer['text_similarity'], rows
    assert f"{learned['image_similarity']:.3f}" in result.stdout
    stages = [line for line in result.stdout.splitlines() if line.startswith('[')]
    assert [line[:5] for line in stages] == ['[1/3]', '[2/3]', '[3/3]']
    assert f"verdict: {metrics['verdict']}" in result.stdout
    assert metrics['verdict'].split(':')[0] in ('learned', 'partly learned')
    # A first run (--resume on an empty work dir) and the three tools: no library noise, no
    # resume chatter, each concept folder named once by training and once by evaluation.
    assert_quiet(result)
    folders = concept_folder_lines(result)
    assert len(folders) == 3 and len(set(folders)) == 2, folders
