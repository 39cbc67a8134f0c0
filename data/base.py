"""What a dataset must provide to the pipeline."""
import abc
import os
from types import MappingProxyType

import numpy as np

from misc.io import read_label_png, read_rgb
from misc.palette import color_map


class SegmentationSource(abc.ABC):
    """A folder of images with image-level labels, split lists and GT masks.

    Subclasses set ``root``, ``class_names`` (names used on the text side,
    e.g. ``dining table``), ``class_aliases`` ({class name: names that count
    as the class in an FG answer}, the reference's ``supply_cat``; see
    :func:`vqa.text_features.fg_prompted_answers`) and ``palette`` (flat [r,
    g, b, ...] colours of the class ids), the registered datasets from their
    :mod:`data.registry` entry, and implement :meth:`split_ids`,
    :meth:`image_path`, :meth:`mask_path` and :meth:`image_label_ids`.
    ``masks_optional``: the dataset may lack masks (the scoring stages then
    score the images that have one, or skip scoring, and say so); on VOC and
    COCO a missing mask is an error.
    """

    name = 'dataset'
    class_names = ()
    class_aliases = MappingProxyType({})
    palette = tuple(color_map())
    masks_optional = False

    @property
    def n_classes(self):
        """Number of foreground classes (background is id 0 in masks)."""
        return len(self.class_names)

    @property
    def label_names(self):
        """Names of the mask ids 0..n_classes (background first)."""
        return ('background',) + tuple(self.class_names)

    @abc.abstractmethod
    def split_ids(self, split):
        """Image ids of a named split."""

    @abc.abstractmethod
    def image_path(self, image_id):
        """Path of the RGB image."""

    @abc.abstractmethod
    def mask_path(self, image_id):
        """Path of the ground-truth class-id mask PNG."""

    @abc.abstractmethod
    def image_label_ids(self, image_id):
        """Sorted 0-based ids of the classes present in the image."""

    def ids(self, split_or_list):
        """Image ids of a split name, or of a list file given by path.

        A value that ends in ``.txt`` or contains a path separator is a file
        (one id per line, the reference ``--train_list`` format); anything
        else is a split name of this dataset.
        """
        if split_or_list.endswith('.txt') or os.sep in split_or_list or '/' in split_or_list:
            return read_id_list(split_or_list)
        return self.split_ids(split_or_list)

    def image_labels(self, image_id):
        """Multi-hot float32 vector of length ``n_classes``."""
        vec = np.zeros(self.n_classes, np.float32)
        vec[list(self.image_label_ids(image_id))] = 1.0
        return vec

    def read_image(self, image_id):
        return read_rgb(self.image_path(image_id))

    def read_mask(self, image_id):
        return read_label_png(self.mask_path(image_id))

    def has_mask(self, image_id):
        return os.path.isfile(self.mask_path(image_id))


def read_id_list(path):
    """Ids in a list file: first whitespace-separated token of each line.

    A repeated id is an error naming both lines: an image listed twice would
    be trained on, or scored, twice.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError('image list %s does not exist' % path)
    ids, first_line = [], {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            image_id = line.split()[0]
            if image_id in first_line:
                raise ValueError('image list %s, line %d: %s is already listed on line %d; '
                                 'remove the repeated line' % (path, number, image_id,
                                                               first_line[image_id]))
            first_line[image_id] = number
            ids.append(image_id)
    if not ids:
        raise ValueError('image list %s is empty' % path)
    return ids
