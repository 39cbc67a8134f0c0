"""A tiny synthetic MS COCO 2014-format dataset (for tests and trying --dataset coco14).

    python tools/make_demo_coco.py --out demo_coco [--n 8] [--seed 0]

``train2014/`` and ``val2014/`` JPEGs named like COCO's, and
``annotations/instances_{train,val}2014.json`` with the 80 standard
categories (their original non-contiguous ids), one to three objects per
image: rectangles and triangles given as polygons, ellipses given as
compressed RLE, and now and then a crowd region (uncompressed RLE).
Returns, per image, the objects it drew so a test can paint the expected
masks itself.
"""
import argparse
import json
import os
import sys

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data.registry import DATASETS  # noqa: E402

# The original (non-contiguous) COCO category ids of the 80 classes, in order.
COCO_CATEGORY_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                     23, 24, 25, 27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44,
                     46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64,
                     65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88,
                     89, 90)


def ellipse_mask(h, w, cy, cx, ry, rx):
    yy, xx = np.mgrid[0:h, 0:w]
    return ((yy + 0.5 - cy) / ry) ** 2 + ((xx + 0.5 - cx) / rx) ** 2 <= 1.0


def draw_object(rng, h, w, class_index):
    """One object: (annotation fields, boolean mask for rendering, description)."""
    kind = ['rectangle', 'triangle', 'ellipse'][int(rng.integers(3))]
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    ry, rx = rng.uniform(0.12, 0.25) * h, rng.uniform(0.12, 0.25) * w
    if kind == 'ellipse':
        mask = ellipse_mask(h, w, cy, cx, ry, rx)
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        segmentation = {'size': rle['size'], 'counts': rle['counts'].decode('ascii')}
    else:
        if kind == 'rectangle':
            poly = [cx - rx, cy - ry, cx + rx, cy - ry, cx + rx, cy + ry, cx - rx, cy + ry]
        else:
            poly = [cx, cy - ry, cx + rx, cy + ry, cx - rx, cy + ry]
        poly = [round(float(v), 2) for v in poly]
        segmentation = [poly]
        mask = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(segmentation, h, w)))
        mask = mask.astype(bool)
    ann = {'segmentation': segmentation, 'area': float(mask.sum()), 'iscrowd': 0,
           'category_id': COCO_CATEGORY_IDS[class_index],
           'bbox': [float(cx - rx), float(cy - ry), float(2 * rx), float(2 * ry)]}
    return ann, mask, {'kind': kind, 'class': class_index, 'cy': cy, 'cx': cx, 'ry': ry, 'rx': rx}


def crowd_annotation(rng, h, w, class_index):
    """A crowd region in a corner, as uncompressed RLE (column-major run lengths)."""
    mask = np.zeros((h, w), np.uint8)
    mask[:h // 6, :w // 6] = 1
    flat = mask.flatten(order='F')
    counts, value, run = [], 0, 0
    for pixel in flat:
        if pixel != value:
            counts.append(run)
            value, run = pixel, 0
        run += 1
    counts.append(run)
    return {'segmentation': {'size': [h, w], 'counts': counts}, 'area': float(mask.sum()),
            'iscrowd': 1, 'category_id': COCO_CATEGORY_IDS[class_index],
            'bbox': [0.0, 0.0, float(w // 6), float(h // 6)]}, mask.astype(bool)


def render(rng, h, w, masks, classes):
    """Noise background, one hue per class (so a CNN can tell them apart)."""
    img = rng.normal(120, 20, (h, w, 3))
    for mask, c in zip(masks, classes):
        colour = np.array([(c * 53) % 256, (c * 97 + 80) % 256, (c * 151 + 40) % 256], float)
        img[mask] = colour + rng.normal(0, 10, (int(mask.sum()), 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def generate_demo_coco(out_dir, n_images=8, seed=0, classes=(0, 2, 15, 16, 56)):
    """Write the dataset; returns {image stem: {'objects': [...], 'crowd': bool, 'split'}}."""
    rng = np.random.default_rng(seed)
    categories = [{'id': cid, 'name': name, 'supercategory': 'thing'}
                  for cid, name in zip(COCO_CATEGORY_IDS, DATASETS['coco14'].class_names)]
    drawn = {}
    for split in ('train2014', 'val2014'):
        os.makedirs(os.path.join(out_dir, split), exist_ok=True)
        images, anns = [], []
        n = n_images if split == 'train2014' else max(2, n_images // 2)
        for k in range(n):
            image_id = (1 if split == 'train2014' else 500000) + k * 7
            stem = 'COCO_%s_%012d' % (split, image_id)
            h, w = int(rng.integers(64, 97)), int(rng.integers(64, 97))
            chosen = rng.choice(classes, size=int(rng.integers(1, 4)), replace=False)
            objects, masks = [], []
            for c in chosen:
                ann, mask, desc = draw_object(rng, h, w, int(c))
                anns.append(dict(ann, id=len(anns) + 1 + image_id * 10, image_id=image_id))
                objects.append(desc)
                masks.append(mask)
            crowd = k % 3 == 2
            if crowd:
                ann, mask = crowd_annotation(rng, h, w, int(chosen[0]))
                anns.append(dict(ann, id=len(anns) + 1 + image_id * 10, image_id=image_id))
            Image.fromarray(render(rng, h, w, masks, [int(c) for c in chosen])).save(
                os.path.join(out_dir, split, stem + '.jpg'), quality=95)
            images.append({'id': image_id, 'file_name': stem + '.jpg', 'height': h, 'width': w})
            drawn[stem] = {'objects': objects, 'crowd': crowd, 'split': split, 'size': (h, w),
                           'annotations': [a for a in anns if a['image_id'] == image_id]}
        os.makedirs(os.path.join(out_dir, 'annotations'), exist_ok=True)
        with open(os.path.join(out_dir, 'annotations', 'instances_%s.json' % split), 'w') as f:
            json.dump({'images': images, 'annotations': anns, 'categories': categories}, f)
    return drawn


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', required=True)
    p.add_argument('--n', type=int, default=8)
    p.add_argument('--seed', type=int, default=0)
    a = p.parse_args(argv)
    drawn = generate_demo_coco(a.out, a.n, a.seed)
    print('%d images -> %s' % (len(drawn), a.out))


if __name__ == '__main__':
    main()
