"""MS COCO 2014 behind the dataset interface (docs/method.md#datasets).

Folder (``--mscoco_root``): ``train2014/``, ``val2014/`` with the images and
``annotations/instances_{train,val}2014.json``. Image ids are the file stems
(``COCO_train2014_000000000009``); splits are ``train`` and ``val`` (or a
list file). Image-level labels come from the instance annotations through
pycocotools, with the 80 categories in the standard contiguous order.

Ground-truth masks (0 background, 1..80 the classes in that order, as the
authors' ``category_map``):

* the authors' layout, when ``mask/train2014/`` (``mask/val2014/``) exists
  in the root: ``mask/<folder>/<image number>.png`` (``COCO_train2014_000000000009``
  -> ``mask/train2014/9.png``), the files their ``mscoco/dataloader.py``
  reads (``get_label_by_name``), used as they are. ReCAM's
  ``mscoco/annToMask.py``, which writes this layout, paints the non-crowd
  instances in annotation order and writes no void label; a 255 in such a
  file is ignored by the evaluation here (the reference's chainercv
  confusion would count it as a class);
* otherwise rendered from the annotations (255 crowd regions): instances are
  painted from the largest to the smallest, crowd annotations only where no
  instance is. Nothing is written into the dataset: with ``mask_cache`` (a
  folder the caller owns; run_sample.py passes ``<work_space>/coco_masks``)
  each rendered mask is saved there as a PNG the first time it is read and
  read back afterwards; without it every read renders it again.
"""
import contextlib
import functools
import io
import os

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from data.base import SegmentationSource
from data.registry import DATASETS
from misc.io import read_label_png, save_png

ENTRY = DATASETS['coco14']

SPLITS = {'train': 'train2014', 'val': 'val2014'}


def annotation_mask(ann, height, width):
    """Binary mask of one annotation (polygons, RLE or uncompressed RLE)."""
    seg = ann['segmentation']
    if isinstance(seg, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
    elif isinstance(seg.get('counts'), list):
        rle = mask_utils.frPyObjects(seg, height, width)
    else:
        rle = seg
    return mask_utils.decode(rle).astype(bool)


def class_mask(anns, height, width, class_index):
    """uint8 [H, W]: instances largest first (small ones on top), crowd -> 255 where empty."""
    out = np.zeros((height, width), np.uint8)
    crowd = np.zeros((height, width), bool)
    for ann in sorted(anns, key=lambda a: -a.get('area', 0)):
        m = annotation_mask(ann, height, width)
        if ann.get('iscrowd', 0):
            crowd |= m
        else:
            out[m] = class_index[ann['category_id']] + 1
    out[crowd & (out == 0)] = 255
    return out


def images_by_stem(images, path):
    """{file stem: image id} of the ``images`` of an annotation file; a file listed
    twice is an error naming the annotation file and both entries."""
    by_stem, entry = {}, {}
    for index, img in enumerate(images):
        stem = os.path.splitext(img['file_name'])[0]
        if stem in by_stem:
            raise ValueError('%s lists the image %s twice (images[%d] and images[%d]): remove '
                             'the repeated entry' % (path, stem, entry[stem], index))
        by_stem[stem], entry[stem] = img['id'], index
    return by_stem


def image_number(image_id):
    """The COCO image id of a file stem: ``COCO_train2014_000000000009`` -> 9."""
    return int(image_id.rsplit('_', 1)[1])


class COCO14(SegmentationSource):
    """The COCO 2014 folder; masks from the authors' folder or rendered from the annotations,
    cached in ``mask_cache`` when given (module doc)."""

    name = ENTRY.name
    class_names = ENTRY.class_names
    class_aliases = ENTRY.text_aliases
    palette = ENTRY.palette

    def __init__(self, root, mask_cache=None):
        if not root:
            raise ValueError('no COCO root given: pass --mscoco_root PATH (the folder with '
                             'train2014/, val2014/ and annotations/)')
        self.root = os.path.abspath(root)
        if not os.path.isdir(os.path.join(self.root, 'annotations')):
            raise FileNotFoundError('COCO root %s has no annotations/ folder: --mscoco_root must '
                                    'hold train2014/, val2014/ and annotations/'
                                    'instances_{train,val}2014.json' % self.root)
        self.mask_cache = os.path.abspath(mask_cache) if mask_cache else None

    def _folder_of(self, image_id):
        for folder in SPLITS.values():
            if '_%s_' % folder in image_id:
                return folder
        raise ValueError('%s is not a COCO 2014 image id (COCO_train2014_... / '
                         'COCO_val2014_...)' % image_id)

    def _annotation_path(self, folder):
        return os.path.join(self.root, 'annotations', 'instances_%s.json' % folder)

    @functools.lru_cache(maxsize=None)
    def _coco(self, folder):
        path = self._annotation_path(folder)
        if not os.path.isfile(path):
            raise FileNotFoundError('COCO annotations %s do not exist' % path)
        with contextlib.redirect_stdout(io.StringIO()):          # pycocotools prints
            coco = COCO(path)
        cat_ids = sorted(coco.getCatIds())
        names = [coco.loadCats(c)[0]['name'] for c in cat_ids]
        if tuple(names) != self.class_names:
            raise ValueError('%s does not have the %d COCO categories in the standard order'
                             % (path, len(self.class_names)))
        by_stem = images_by_stem(coco.dataset['images'], path)
        return coco, {c: i for i, c in enumerate(cat_ids)}, by_stem

    def _image_record(self, image_id):
        coco, index, by_stem = self._coco(self._folder_of(image_id))
        if image_id not in by_stem:
            raise KeyError('%s is not in the COCO annotations of %s' % (image_id, self.root))
        record = coco.loadImgs(by_stem[image_id])[0]
        return coco, index, record

    def split_ids(self, split):
        if split not in SPLITS:
            raise FileNotFoundError('COCO split %r unknown (train, val; or a list file)' % split)
        _, _, by_stem = self._coco(SPLITS[split])
        return sorted(by_stem)

    def image_path(self, image_id):
        return os.path.join(self.root, self._folder_of(image_id), image_id + '.jpg')

    def reference_mask_dir(self, image_id):
        """``<root>/mask/train2014`` or ``<root>/mask/val2014``: the authors' mask folder."""
        return os.path.join(self.root, 'mask', self._folder_of(image_id))

    def reference_mask_path(self, image_id):
        """The authors' mask file of the image, or None when their mask folder does not exist."""
        reference_dir = self.reference_mask_dir(image_id)
        if not os.path.isdir(reference_dir):
            return None
        path = os.path.join(reference_dir, '%d.png' % image_number(image_id))
        if not os.path.isfile(path):
            raise FileNotFoundError(
                'mask %s of %s does not exist: %s is the authors\' mask folder, so every mask '
                'of its images is read from it (add the file, or move the folder away to render '
                'the masks from the annotations)' % (path, image_id, reference_dir))
        return path

    def _cached_mask_path(self, image_id):
        return os.path.join(self.mask_cache, image_id + '.png') if self.mask_cache else None

    def mask_path(self, image_id):
        """The authors' mask file; else the rendered mask's PNG in ``mask_cache``; else the
        annotation file the mask is rendered from."""
        return (self.reference_mask_path(image_id) or self._cached_mask_path(image_id)
                or self._annotation_path(self._folder_of(image_id)))

    def has_mask(self, image_id):
        """The authors' mask exists, or the image is annotated (its mask is rendered)."""
        if self.reference_mask_path(image_id) is not None:
            return True
        _, _, by_stem = self._coco(self._folder_of(image_id))
        return image_id in by_stem

    def read_mask(self, image_id):
        """The authors' mask, else the mask rendered from the annotations (read from and
        written to ``mask_cache`` when given)."""
        reference = self.reference_mask_path(image_id)
        if reference is not None:
            return read_label_png(reference)
        cached = self._cached_mask_path(image_id)
        if cached is not None and os.path.isfile(cached):
            return read_label_png(cached)
        mask = self.render_mask(image_id)
        if cached is not None:
            save_png(cached, mask)
        return mask

    def render_mask(self, image_id):
        """uint8 [H, W] class ids of the image's annotations (:func:`class_mask`)."""
        coco, index, record = self._image_record(image_id)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=record['id']))
        return class_mask(anns, record['height'], record['width'], index)

    def image_label_ids(self, image_id):
        coco, index, record = self._image_record(image_id)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=record['id']))
        return tuple(sorted(set(index[a['category_id']] for a in anns)))
