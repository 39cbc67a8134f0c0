"""VQA answers for the synthetic demo dataset (what a VQA model would say of it).

For every image and class present, answers to the 6 FG and 10 BG questions of
docs/method.md#vqa-answers, naming what the generator drew
(:func:`tools.make_demo_voc.scene_description`): the object's shape, body
colour, texture and discriminative part for FG; the background regions (the
class's co-occurring region first), the plain background and the other
objects of the image for BG. Written in the reference schema as JSON
(``vqa_fg.json``, ``vqa_bg.json`` at the dataset root), directly usable by
``tools/gen_text_feats_cache.py``.
"""
import colorsys
import json
import os

import numpy as np

from data.registry import DATASETS
from misc.io import atomic_write
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


def fg_answers(obj):
    """Six FG answers naming the drawn object: shape, body colour, texture, part, class."""
    shape, texture = obj['shape'], 'striped' if obj['striped'] else 'plain'
    return [shape, '%s %s' % (obj['hue'], shape), '%s %s' % (texture, shape),
            '%s spot' % obj['part'], VOC_CLASS_NAMES[obj['cls']], '%s object' % obj['hue']]


def bg_answers(scene, obj):
    """Ten BG answers naming the drawn surroundings of ``obj``: its own region first
    when drawn, the other regions, the plain background, the other objects."""
    regions = list(scene['regions'])
    regions.sort(key=lambda kind: kind != obj['home'])
    others = [VOC_CLASS_NAMES[o['cls']] for o in scene['objects'] if o['cls'] != obj['cls']]
    ground = '%s %s' % ('light' if scene['bright'] else 'dark', scene['background'])
    words = regions + ['%s background' % scene['background'], ground + ' wall'] + others
    words += ['%s ground' % scene['background']] * (10 - len(words))
    return words[:10]


def entry(questions, answers):
    return {'vqa': [[q, a] for q, a in zip(questions, answers)], 'answers': list(answers)}


def image_answers(scene):
    """({class name: FG entry}, {class name: BG entry}) of one image's scene description."""
    fg, bg = {}, {}
    for obj in scene['objects']:
        name = VOC_CLASS_NAMES[obj['cls']]
        fg[name] = entry(FG_QUESTIONS, fg_answers(obj))
        bg[name] = entry(BG_QUESTIONS, bg_answers(scene, obj))
    return fg, bg


def write_demo_vqa(root, scenes):
    """Write ``vqa_fg.json`` and ``vqa_bg.json`` for every image of ``scenes``
    ({image id: scene description})."""
    fg_all, bg_all = {}, {}
    for image_id in sorted(scenes):
        fg_all[image_id], bg_all[image_id] = image_answers(scenes[image_id])
    paths = []
    for name, data in (('vqa_fg.json', fg_all), ('vqa_bg.json', bg_all)):
        path = os.path.join(root, name)
        with atomic_write(path, 'w') as f:
            json.dump(data, f, indent=1, sort_keys=True)
        paths.append(path)
    return paths
