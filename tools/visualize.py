"""Pictures for a person to look at: coloured label maps, tiles side by side."""

import numpy as np

from misc.palette import color_map


def colorize_label(label, palette=None):
    """Class-id map -> RGB with ``palette`` (flat [r, g, b, ...]; default the
    generated colour map, VOC's: 255 void is white-ish as in VOC)."""
    colours = np.array(color_map() if palette is None else palette, np.uint8).reshape(-1, 3)
    return colours[np.asarray(label, np.uint8)]


def side_by_side(tiles, gap=6):
    """RGB tiles of one height in a row, ``gap`` white pixels apart."""
    spacer = np.full((tiles[0].shape[0], gap, 3), 255, np.uint8)
    row = [tiles[0]]
    for tile in tiles[1:]:
        row += [spacer, tile]
    return np.concatenate(row, axis=1)
