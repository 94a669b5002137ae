"""The two numbers read off :func:`~mmti.evaluation.evaluate_concept`'s rows.

* gap closed: how far the learned row's image similarity has come from the
  initializer word's (the prompt-only baseline, 0) to the held-out real
  images' (the image-only point, 1);
* text ratio: the learned row's text similarity over the initializer's
  (1 = the placeholder leaves edit prompts as editable as a plain word).

:func:`~mmti.evaluation.verdict` states the same two numbers in words.
"""


def _row(rows: dict, name: str, needed_for: str) -> dict:
    if name not in rows:
        raise ValueError(f'{needed_for} needs the {name!r} row; the rows are {sorted(rows)} '
                         '(evaluate with the initializer word and held-out images).')
    return rows[name]


def gap_closed(rows: dict) -> float:
    """(learned - initializer) / (image only - initializer), on image similarity.

    Raises:
        ValueError: a row is missing, or the initializer already scores as
            high as the real images (the gap is empty: nothing to close).
    """
    learned = _row(rows, 'learned', 'gap closed')['image_similarity']
    initializer = _row(rows, 'initializer', 'gap closed')['image_similarity']
    real = _row(rows, 'image only', 'gap closed')['image_similarity']
    if real <= initializer:
        raise ValueError(f'the initializer word scores {initializer:.4f}, as high as the real '
                         f'images ({real:.4f}): image similarity cannot show learning here.')
    return (learned - initializer) / (real - initializer)


def text_ratio(rows: dict) -> float:
    """learned / initializer, on text similarity."""
    learned = _row(rows, 'learned', 'text ratio')['text_similarity']
    return learned / _row(rows, 'initializer', 'text ratio')['text_similarity']


def concept_numbers(rows: dict) -> dict:
    """One concept's line of a table, flat: the learned row's image and text
    similarity, each baseline's as ``<row>_image_similarity`` /
    ``<row>_text_similarity`` (``initializer``, ``image_only``), the gap
    closed and the text ratio (None where the rows cannot give them)."""
    numbers = {'image_similarity': rows['learned']['image_similarity'],
               'text_similarity': rows['learned']['text_similarity']}
    for name in ('initializer', 'image only'):
        if name in rows:
            numbers[f'{name.replace(" ", "_")}_image_similarity'] = rows[name]['image_similarity']
            numbers[f'{name.replace(" ", "_")}_text_similarity'] = rows[name]['text_similarity']
    for key, score in (('gap_closed', gap_closed), ('text_ratio', text_ratio)):
        try:
            numbers[key] = score(rows)
        except ValueError:  # a baseline is missing, or the gap is empty
            numbers[key] = None
    return numbers
