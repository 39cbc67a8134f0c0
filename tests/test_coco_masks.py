"""COCO class masks from overlapping instances and crowd regions.

The rule (coco14/dataset.py): instances are painted from the largest to the
smallest, so a smaller instance stays on top of a larger one it overlaps;
crowd regions become 255 only where no instance is. A COCO JSON written here
holds scenes where instances overlap each other and crowd regions, given as
polygons (integer rectangles), compressed RLE and uncompressed RLE, listed
in an order that differs from the painting order. The expected masks are
drawn here with PIL / numpy and stacked bottom to top in the order written
in each scene; the product's masks come through ``COCO14.read_mask``.
"""
import json
import os

import numpy as np
import pytest
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from coco14.dataset import COCO14
from tools.make_demo_coco import COCO_CATEGORY_IDS

CLASS = {name: i for i, name in enumerate(COCO14.class_names)}


def rectangle(box, size):
    """Pixels [top, bottom) x [left, right) of an (left, top, right, bottom) box."""
    canvas = Image.new('1', (size[1], size[0]), 0)
    left, top, right, bottom = box
    ImageDraw.Draw(canvas).rectangle([left, top, right - 1, bottom - 1], fill=1)
    return np.asarray(canvas, bool)


def ellipse(centre, radii, size):
    yy, xx = np.mgrid[0:size[0], 0:size[1]]
    return ((yy + 0.5 - centre[0]) / radii[0]) ** 2 + ((xx + 0.5 - centre[1]) / radii[1]) ** 2 <= 1


def uncompressed_rle(mask):
    """COCO's uncompressed RLE: run lengths over the column-major pixels, zeros first."""
    flat = mask.flatten(order='F').astype(np.int64)
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts = [0] + counts
    return {'size': list(mask.shape), 'counts': counts}


def segmentation(shape, mask):
    """The annotation's ``segmentation`` in the shape's encoding."""
    if shape['encoding'] == 'polygon':
        left, top, right, bottom = shape['box']
        return [[left, top, right, top, right, bottom, left, bottom]]
    if shape['encoding'] == 'uncompressed_rle':
        return uncompressed_rle(mask)
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {'size': rle['size'], 'counts': rle['counts'].decode('ascii')}


def drawn(shape, size):
    if 'box' in shape:
        return rectangle(shape['box'], size)
    return ellipse(shape['centre'], shape['radii'], size)


# Each scene: shapes in JSON order; ``bottom_to_top`` names the instances in the order
# they end up stacked (largest at the bottom), ``crowd`` the crowd regions.
SCENES = {
    'crowd_and_nested_instances': {
        'size': (48, 64),
        'shapes': {
            'crowd': {'class': 'person', 'box': (0, 0, 40, 30), 'encoding': 'uncompressed_rle'},
            'cat': {'class': 'cat', 'centre': (24, 30), 'radii': (9, 12),
                    'encoding': 'compressed_rle'},
            'dog': {'class': 'dog', 'box': (10, 8, 50, 40), 'encoding': 'polygon'}},
        'bottom_to_top': ['dog', 'cat'], 'crowd': ['crowd']},
    'partly_overlapping_instances_crowd_covered': {
        'size': (40, 50),
        'shapes': {
            'toothbrush': {'class': 'toothbrush', 'box': (4, 5, 30, 25), 'encoding': 'polygon'},
            'person': {'class': 'person', 'centre': (22, 28), 'radii': (16, 20),
                       'encoding': 'uncompressed_rle'},
            'crowd': {'class': 'car', 'box': (8, 8, 16, 14), 'encoding': 'compressed_rle'}},
        'bottom_to_top': ['person', 'toothbrush'], 'crowd': ['crowd']},
    'crowd_over_background_and_instance': {
        'size': (36, 44),
        'shapes': {
            'crowd': {'class': 'bus', 'centre': (18, 22), 'radii': (14, 18),
                      'encoding': 'compressed_rle'},
            'car': {'class': 'car', 'box': (30, 2, 44, 20), 'encoding': 'polygon'}},
        'bottom_to_top': ['car'], 'crowd': ['crowd']},
}


def expected_mask(scene):
    out = np.zeros(scene['size'], np.uint8)
    for name in scene['bottom_to_top']:
        out[drawn(scene['shapes'][name], scene['size'])] = CLASS[scene['shapes'][name]['class']] + 1
    for name in scene['crowd']:
        out[drawn(scene['shapes'][name], scene['size']) & (out == 0)] = 255
    return out


def write_coco(root):
    """instances_train2014.json with the scenes; returns {image id: scene}."""
    images, annotations, by_id = [], [], {}
    for k, (title, scene) in enumerate(sorted(SCENES.items())):
        image_number = 100 + k
        stem = 'COCO_train2014_%012d' % image_number
        h, w = scene['size']
        images.append({'id': image_number, 'file_name': stem + '.jpg', 'height': h, 'width': w})
        for name, shape in scene['shapes'].items():
            mask = drawn(shape, scene['size'])
            annotations.append({
                'id': len(annotations) + 1, 'image_id': image_number,
                'category_id': COCO_CATEGORY_IDS[CLASS[shape['class']]],
                'segmentation': segmentation(shape, mask), 'area': float(mask.sum()),
                'iscrowd': int(name in scene['crowd']), 'bbox': [0.0, 0.0, float(w), float(h)]})
        by_id[stem] = scene
    categories = [{'id': c, 'name': n, 'supercategory': 'thing'}
                  for c, n in zip(COCO_CATEGORY_IDS, COCO14.class_names)]
    os.makedirs(os.path.join(root, 'annotations'))
    with open(os.path.join(root, 'annotations', 'instances_train2014.json'), 'w') as f:
        json.dump({'images': images, 'annotations': annotations, 'categories': categories}, f)
    return by_id


@pytest.fixture(scope='module')
def coco(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('coco_overlaps'))
    return root, write_coco(root)


def test_scenes_exercise_every_overlap():
    """The scenes really overlap: an instance over a larger one, crowd over instances
    and background, a crowd region entirely under an instance."""
    for scene in SCENES.values():
        masks = {n: drawn(s, scene['size']) for n, s in scene['shapes'].items()}
        areas = [masks[n].sum() for n in scene['bottom_to_top']]
        assert areas == sorted(areas, reverse=True)
        assert list(scene['shapes']) != scene['bottom_to_top'] + scene['crowd']
        for crowd in scene['crowd']:
            assert any((masks[crowd] & masks[n]).any() for n in scene['bottom_to_top'])
    nested = SCENES['crowd_and_nested_instances']['shapes']
    size = SCENES['crowd_and_nested_instances']['size']
    assert (drawn(nested['cat'], size) <= drawn(nested['dog'], size)).all()
    covered = SCENES['partly_overlapping_instances_crowd_covered']['shapes']
    size = SCENES['partly_overlapping_instances_crowd_covered']['size']
    assert (drawn(covered['crowd'], size) <= drawn(covered['toothbrush'], size)).all()


def test_masks_follow_the_painting_rule(coco):
    root, scenes = coco
    source = COCO14(root)
    for image_id, scene in scenes.items():
        np.testing.assert_array_equal(source.read_mask(image_id), expected_mask(scene))
        assert source.has_mask(image_id)
    assert sorted(os.listdir(root)) == ['annotations']      # nothing written into the dataset


def test_rendered_masks_are_cached_in_the_folder_passed_in(coco, tmp_path):
    root, scenes = coco
    cache = tmp_path / 'mask_cache'
    source = COCO14(root, mask_cache=str(cache))
    for image_id, scene in scenes.items():
        path = cache / (image_id + '.png')
        assert source.mask_path(image_id) == str(path)
        np.testing.assert_array_equal(source.read_mask(image_id), expected_mask(scene))
        np.testing.assert_array_equal(np.asarray(Image.open(path)), expected_mask(scene))
    marked = next(iter(scenes))
    Image.fromarray(np.full(scenes[marked]['size'], 7, np.uint8)).save(cache / (marked + '.png'))
    assert (COCO14(root, mask_cache=str(cache)).read_mask(marked) == 7).all()   # read back
    assert sorted(os.listdir(root)) == ['annotations']


def test_image_labels_count_every_annotation_crowd_included(coco):
    """As the authors' COCO loader (all annotations of the image, crowd ones too)."""
    root, scenes = coco
    source = COCO14(root)
    for image_id, scene in scenes.items():
        expected = tuple(sorted({CLASS[s['class']] for s in scene['shapes'].values()}))
        assert source.image_label_ids(image_id) == expected
