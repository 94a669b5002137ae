"""The attribute words of the toy world and the colours they name.

Every word is a single token of SD's CLIP tokenizer (a test checks this), so a
concept's parts map onto single embedding rows, as a real prompt's words do.
"""

SHAPES = ('circle', 'square', 'triangle', 'star', 'cross')

# Saturated and mutually distinct, so a small model can tell them apart.
COLOURS = {
    'red': (220, 30, 30),
    'green': (40, 170, 60),
    'blue': (40, 80, 220),
    'yellow': (240, 210, 40),
    'purple': (140, 50, 180),
    'orange': (245, 130, 20),
}

SIZES = ('small', 'large')

# Where the shape sits, and how a caption says it ("at the top", not "on the top").
POSITION_PHRASES = {
    'left': 'on the left',
    'right': 'on the right',
    'top': 'at the top',
    'bottom': 'at the bottom',
    'center': 'in the center',
}
POSITIONS = tuple(POSITION_PHRASES)

# Blue is also a shape colour; sampling never puts a shape on its own colour.
BACKGROUNDS = {
    'white': (245, 245, 245),
    'black': (15, 15, 15),
    'gray': (128, 128, 128),
    'blue': COLOURS['blue'],
}

# 'plain' is never said in a caption: an unpatterned shape is the default.
PATTERNS = ('plain', 'striped', 'dotted')


def all_words() -> list[str]:
    """Every attribute word, each once, in a fixed order."""
    words = [*SHAPES, *COLOURS, *SIZES, *POSITIONS, *BACKGROUNDS, *PATTERNS]
    return list(dict.fromkeys(words))
