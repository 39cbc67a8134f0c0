"""VQA answers for the synthetic demo dataset (what a VQA model would say of it).

For every image and class present, answers to the 6 FG and 10 BG questions of
docs/method.md#vqa-answers, derived from what the generator drew: the class's shape,
hue and texture for FG, the background's colour and brightness and the other
objects of the image for BG. Written in the reference schema as JSON
(``vqa_fg.json``, ``vqa_bg.json`` at the dataset root), directly usable by
``tools/gen_text_feats_cache.py``.
"""
import colorsys
import json
import os

import numpy as np
from PIL import Image

from data.registry import DATASETS
from vqa.results import BG_QUESTIONS, FG_QUESTIONS

VOC_CLASS_NAMES = DATASETS['voc12'].class_names
HUE_NAMES = ((0.04, 'red'), (0.11, 'orange'), (0.19, 'yellow'), (0.45, 'green'),
             (0.54, 'cyan'), (0.71, 'blue'), (0.83, 'purple'), (0.95, 'pink'), (1.01, 'red'))


def colour_name(rgb):
    """Plain-English name of an RGB colour (grey when unsaturated)."""
    h, s, v = colorsys.rgb_to_hsv(*(np.asarray(rgb, np.float64) / 255.0))
    if s < 0.18:
        return 'grey'
    return next(name for limit, name in HUE_NAMES if h < limit)


def fg_answers(class_id, shape, hue, striped):
    """Six FG answers: what kind / type / other names of the drawn object."""
    name = VOC_CLASS_NAMES[class_id]
    texture = 'striped' if striped else 'plain'
    return [shape, '%s %s' % (hue, shape), '%s %s' % (texture, shape), '%s shape' % hue, name,
            '%s object' % hue]


def bg_answers(background_rgb, other_classes):
    """Ten BG answers: surroundings of the object (background colour, other objects)."""
    colour = colour_name(background_rgb)
    bright = 'light' if np.mean(background_rgb) > 128 else 'dark'
    others = [VOC_CLASS_NAMES[c] for c in other_classes] + ['%s texture' % colour, 'noise']
    return ['%s wall' % colour, '%s ground' % colour, '%s background' % colour,
            '%s texture' % bright, others[0], others[1], '%s surface' % colour,
            'synthetic scene', '%s %s room' % (bright, colour), 'studio']


def entry(questions, answers):
    return {'vqa': [[q, a] for q, a in zip(questions, answers)], 'answers': list(answers)}


def image_answers(rgb, mask, classes, shapes, striped_of):
    """({class name: FG entry}, {class name: BG entry}) of one image."""
    background = rgb[mask == 0].mean(axis=0) if np.any(mask == 0) else rgb.reshape(-1, 3).mean(0)
    fg, bg = {}, {}
    for c in classes:
        pixels = rgb[mask == c + 1]
        hue = colour_name(pixels.mean(axis=0)) if len(pixels) else 'grey'
        name = VOC_CLASS_NAMES[c]
        fg[name] = entry(FG_QUESTIONS, fg_answers(c, shapes[c], hue, striped_of(c)))
        bg[name] = entry(BG_QUESTIONS, bg_answers(background, [o for o in classes if o != c]))
    return fg, bg


def write_demo_vqa(root, labels, mask_path, shapes, striped_of):
    """Write ``vqa_fg.json`` and ``vqa_bg.json`` for every image of ``labels``."""
    fg_all, bg_all = {}, {}
    for image_id in sorted(labels):
        with Image.open(os.path.join(root, 'JPEGImages', image_id + '.jpg')) as img:
            rgb = np.asarray(img.convert('RGB'), np.float64)
        with Image.open(mask_path(image_id)) as m:
            mask = np.asarray(m)
        fg_all[image_id], bg_all[image_id] = image_answers(rgb, mask, labels[image_id], shapes,
                                                           striped_of)
    paths = []
    for name, data in (('vqa_fg.json', fg_all), ('vqa_bg.json', bg_all)):
        path = os.path.join(root, name)
        tmp = path + '.tmp'
        with open(tmp, 'w') as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
        paths.append(path)
    return paths
