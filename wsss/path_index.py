"""IRNet pixel-pair indexing (docs/method.md#pixel-pairs-pathindex).

Pairs of pixels within a radius on the stride-4 grid: a set of search
directions (dy, dx) covering a half-plane, the pixels on the path from a
source to each destination (grouped by path length), and flat indices of
sources, destinations and path pixels on a grid of a given size. The
construction and every ordering follow the reference ``PathIndex``.
:class:`AffinityDataset` gives IRNet's training pairs with their pair labels.
"""
import math

import numpy as np
import torch
from torch.utils.data import Dataset

from misc import imutils
from misc.io import per_image_file, read_label_png


def search_directions(radius):
    """Offsets (dy, dx) with 0 < dy^2 + dx^2 < radius^2 in the reference half-plane order."""
    dirs = [(0, x) for x in range(1, radius)]
    for y in range(1, radius):
        dirs += [(y, x) for x in range(-radius + 1, radius) if x * x + y * y < radius ** 2]
    return dirs


def path_to(direction):
    """Grid cells within distance 1 of the segment (0,0)-(dy,dx), destination first."""
    dy, dx = direction
    length_sq = dy * dy + dx * dx
    cells = [[y, x] for y in range(min(0, dy), max(0, dy) + 1)
             for x in range(min(0, dx), max(0, dx) + 1)
             if (dy * x - dx * y) ** 2 / length_sq < 1]
    cells.sort(key=lambda c: -abs(c[0]) - abs(c[1]))
    return cells


def paths_by_length(radius):
    """Paths grouped by their number of cells: list of int arrays [n_dirs_l, l, 2]."""
    groups = {}
    for direction in search_directions(radius):
        path = path_to(direction)
        groups.setdefault(len(path), []).append(path)
    return [np.asarray(groups[length]) for length in sorted(groups)]


class PathIndex:
    """Path, source and destination indices of all pairs on a ``size`` grid."""

    def __init__(self, radius, default_size):
        self.radius = radius
        self.radius_floor = int(math.ceil(radius) - 1)
        self.search_paths = paths_by_length(radius)
        self.search_dst = np.concatenate([p[:, 0] for p in self.search_paths], axis=0)
        self.path_indices, self.src_indices, self.dst_indices = self.indices(default_size)

    def cropped_size(self, size):
        """Rows/columns of the sources: every destination stays inside the grid."""
        return size[0] - self.radius_floor, size[1] - 2 * self.radius_floor

    def indices(self, size):
        """(path_indices list of [n_dirs_l, l, n_src], src [n_src], dst [n_dirs, n_src])."""
        h, w = self.cropped_size(size)
        if h <= 0 or w <= 0:
            raise ValueError('a %dx%d grid is too small for pairs within radius %s (needs more '
                             'than %d columns): use a larger crop' % (size[0], size[1],
                                                                      self.radius,
                                                                      2 * self.radius_floor))
        full = np.arange(size[0] * size[1], dtype=np.int64).reshape(size)
        r = self.radius_floor

        def shifted(dy, dx):
            return full[dy:dy + h, r + dx:r + dx + w].reshape(-1)

        path_indices = [np.array([[shifted(dy, dx) for dy, dx in path] for path in paths])
                        for paths in self.search_paths]
        src = full[:h, r:r + w].reshape(-1)
        dst = np.concatenate([p[:, 0] for p in path_indices], axis=0)
        return path_indices, src, dst


def affinity_labels(label, src_indices, dst_indices, n_labels):
    """Pair labels from a reduced label map (values 0..n_labels-1 valid, others ignored).

    ``n_labels`` = background + the dataset's classes (VOC 21, COCO 81); 255
    (uncertain) and any value >= n_labels is ignored, as the reference's
    ``GetAffinityLabelFromIndices`` (which hard-codes 21 for VOC, 81 for COCO).
    Returns float32 (bg_pos, fg_pos, neg) [n_dirs, n_src]: both ends
    background; both the same foreground class; different valid labels.
    """
    flat = np.reshape(label, -1)
    src = np.expand_dims(flat[src_indices], 0)
    dst = flat[dst_indices]
    src_valid, dst_valid = src < n_labels, dst < n_labels
    valid = src_valid & dst_valid
    same = src == dst
    bg_pos = (same & (src == 0) & valid).astype(np.float32)
    fg_pos = (same & (src != 0) & valid).astype(np.float32)
    neg = (~same & valid).astype(np.float32)
    return bg_pos, fg_pos, neg


class AffinityDataset(Dataset):
    """IRNet training pairs (docs/method.md#irnet-training): image, confident-region labels
    reduced by 4 (nearest) and the pair labels of ``path_index`` (classes
    0..n_classes of the source, e.g. < 81 on COCO; 255 ignored).

    Augmentation as the reference: random rescale by one factor uniform in
    ``rescale`` (image bicubic, label nearest; None = off), normalisation,
    joint flip, joint random crop (fill 0 / 255). Items: ``img``, ``label``
    (the cropped label map), ``reduced_label`` and the three pair labels.
    """

    def __init__(self, source, ids, label_dir, crop_size, path_index, rescale=(0.5, 1.5),
                 hor_flip=True):
        self.source = source
        self.ids = list(ids)
        self.label_dir = label_dir
        self.crop_size = crop_size
        self.path_index = path_index
        self.rescale = rescale
        self.hor_flip = hor_flip

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, idx):
        image_id = self.ids[idx]
        img = self.source.read_image(image_id)
        label = read_label_png(per_image_file(self.label_dir, image_id, '.png'))
        if self.rescale:
            img, label = imutils.random_scale_pair(img, label, self.rescale)
        img = imutils.imagenet_normalize(img)
        if self.hor_flip:
            img, label = imutils.random_lr_flip_pair(img, label)
        img, label = imutils.random_crop_pair(img, label, self.crop_size)
        reduced = imutils.pil_rescale(np.ascontiguousarray(label), 0.25, 0)
        bg_pos, fg_pos, neg = affinity_labels(reduced, self.path_index.src_indices,
                                              self.path_index.dst_indices,
                                              self.source.n_classes + 1)
        return {'name': image_id,
                'img': torch.from_numpy(np.ascontiguousarray(imutils.hwc_to_chw(img))),
                'label': torch.from_numpy(np.ascontiguousarray(label)),
                'reduced_label': torch.from_numpy(np.array(reduced)),
                'aff_bg_pos_label': torch.from_numpy(bg_pos),
                'aff_fg_pos_label': torch.from_numpy(fg_pos),
                'aff_neg_label': torch.from_numpy(neg)}
