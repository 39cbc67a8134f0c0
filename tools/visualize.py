"""Pictures for a person to look at: CAM overlays and coloured label maps."""

import numpy as np

from misc.io import load_npz, per_image_file, read_label_png, save_png
from misc.palette import color_map
from wsss.metrics import cam_to_label


def jet(values):
    """float [H, W] in [0, 1] -> uint8 [H, W, 3] with the 'jet' colour ramp."""
    x = np.clip(values, 0.0, 1.0)[..., None]
    centres = np.array([3.0, 2.0, 1.0])
    return (np.clip(1.5 - np.abs(4.0 * x - centres), 0.0, 1.0) * 255).astype(np.uint8)


def cam_overlay(img, cam_max, alpha=0.5):
    """Blend the image with the jet colouring of a [0, 1] CAM map."""
    blend = (1 - alpha) * img.astype(np.float32) + alpha * jet(cam_max).astype(np.float32)
    return np.clip(np.rint(blend), 0, 255).astype(np.uint8)


def colorize_label(label, palette=None):
    """Class-id map -> RGB with ``palette`` (flat [r, g, b, ...]; default the
    generated colour map, VOC's: 255 void is white-ish as in VOC)."""
    colours = np.array(color_map() if palette is None else palette, np.uint8).reshape(-1, 3)
    return colours[np.asarray(label, np.uint8)]


def cam_panel(img, cams, gt=None, threshold=0.15, palette=None):
    """[image | CAM overlay | CAM labels at ``threshold`` | GT] side by side (labels in
    ``palette``, see :func:`colorize_label`)."""
    high_res, keys = cams['high_res'], cams['keys']
    cam_max = high_res.max(0) if len(keys) else np.zeros(img.shape[:2], np.float32)
    tiles = [img, cam_overlay(img, cam_max),
             colorize_label(cam_to_label(high_res, keys, threshold), palette)]
    if gt is not None:
        tiles.append(colorize_label(gt, palette))
    gap = np.full((img.shape[0], 4, 3), 255, np.uint8)
    row = [tiles[0]]
    for tile in tiles[1:]:
        row += [gap, tile]
    return np.concatenate(row, axis=1)


def write_cam_panels(source, ids, cam_dir, out_dir, threshold=0.15):
    """One PNG panel per id in ``out_dir``; returns the written paths."""
    paths = []
    for image_id in ids:
        cams = load_npz(per_image_file(cam_dir, image_id, '.npz'), required=('keys', 'high_res'))
        gt = source.read_mask(image_id) if source.has_mask(image_id) else None
        path = per_image_file(out_dir, image_id, '.png')
        save_png(path, cam_panel(source.read_image(image_id), cams, gt, threshold,
                                 source.palette))
        paths.append(path)
    return paths


def write_label_panels(source, ids, label_dir, out_dir):
    """[image | label PNG of ``label_dir`` | GT] per id; returns the written paths."""
    paths = []
    for image_id in ids:
        img = source.read_image(image_id)
        label = read_label_png(per_image_file(label_dir, image_id, '.png'))
        gap = np.full((img.shape[0], 4, 3), 255, np.uint8)
        row = [img, gap, colorize_label(label, source.palette)]
        if source.has_mask(image_id):
            row += [gap, colorize_label(source.read_mask(image_id), source.palette)]
        path = per_image_file(out_dir, image_id, '.png')
        save_png(path, np.concatenate(row, axis=1))
        paths.append(path)
    return paths
