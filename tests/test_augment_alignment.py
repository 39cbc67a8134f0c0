"""Augmentation keeps every label-derived target aligned with its image.

Each training dataset that returns an image with a spatial target runs its
own ``__getitem__`` on a synthetic image whose pixels encode where they came
from (R = column, G = row, B = the label of that pixel) and a label map of
irregular constant blocks, for many seeds. Decoding the position of every
output pixel from the (un-normalised) image says which label it must carry:
exactly when the rescale factor is 1, and on label-constant neighbourhoods
otherwise (a bicubic image against a nearest-neighbour label). Padding must
be 255 in the label and 0 (the padded normalised value) in the image.

The same dataset classes serve VOC and COCO (a ``SegmentationSource``), so
every test runs with both class sets: COCO labels go up to 80.
``ClassificationDataset`` returns image-level labels only (no spatial
target) and is not concerned.
"""
import os
import random

import numpy as np
import pytest
from PIL import Image

from data.base import SegmentationSource
from data.loaders import SegmentationTrainDataset
from data.registry import DATASETS
from misc.imutils import IMAGENET_MEAN, IMAGENET_STD
from wsss.path_index import AffinityDataset, PathIndex

SEEDS = range(30)
IGNORE = 255
IMAGE_SIZES = {'wide': (80, 130), 'small': (44, 58)}    # (H, W); positions fit in one byte


class PositionCodedSource(SegmentationSource):
    """Images and GT masks written by the test (PNG, lossless)."""

    name = 'position_coded'

    def __init__(self, root, class_names, labels):
        self.root = root
        self.class_names = class_names
        self.labels = labels

    def split_ids(self, split):
        return sorted(self.labels)

    def image_path(self, image_id):
        return os.path.join(self.root, image_id + '.png')

    def mask_path(self, image_id):
        return os.path.join(self.root, 'masks', image_id + '.png')

    def image_label_ids(self, image_id):
        present = np.unique(self.labels[image_id])
        return tuple(int(c) - 1 for c in present if 0 < c < IGNORE)


def block_label_map(rng, size, n_classes):
    """Irregular blocks 6..15 px wide, each with a random class id or 255 (no symmetry)."""
    edges = [np.cumsum(rng.integers(6, 16, size=side)) for side in size]
    rows = np.searchsorted(edges[0], np.arange(size[0]), side='right')
    cols = np.searchsorted(edges[1], np.arange(size[1]), side='right')
    values = np.append(np.arange(n_classes + 1), IGNORE)
    cells = rng.choice(values, size=(rows.max() + 1, cols.max() + 1)).astype(np.uint8)
    return cells[rows[:, None], cols[None, :]]


def position_coded_image(label):
    """R = x, G = y, B = the label of the pixel."""
    h, w = label.shape
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx, yy, label], axis=-1).astype(np.uint8)


@pytest.fixture(scope='module', params=['voc12', 'coco14'])
def coded(request, tmp_path_factory):
    """(source, {id: original label map}, label folder holding the same maps)."""
    class_names = DATASETS[request.param].class_names
    root = tmp_path_factory.mktemp(request.param)
    rng = np.random.default_rng(7)
    labels = {name: block_label_map(rng, size, len(class_names))
              for name, size in IMAGE_SIZES.items()}
    for folder in ('masks', 'labels'):
        os.makedirs(root / folder)
    for name, label in labels.items():
        Image.fromarray(position_coded_image(label)).save(root / (name + '.png'))
        for folder in ('masks', 'labels'):
            Image.fromarray(label).save(root / folder / (name + '.png'))
    return PositionCodedSource(str(root), class_names, labels), labels, str(root / 'labels')


class Decoded:
    """The output image decoded: where each pixel came from, and the padding."""

    def __init__(self, img_chw):
        img = img_chw.numpy().transpose(1, 2, 0).astype(np.float64)
        self.pad = (img == 0).all(-1)
        self.rgb = (img * IMAGENET_STD + IMAGENET_MEAN) * 255
        self.x, self.y, self.region = np.rint(self.rgb).astype(int).transpose(2, 0, 1)

    def valid_box(self):
        """The rectangle of image pixels; asserts that it is one."""
        rows, cols = np.nonzero(~self.pad)
        box = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        inside = np.zeros_like(self.pad)
        inside[box[0]:box[1], box[2]:box[3]] = True
        np.testing.assert_array_equal(~self.pad, inside)
        return box

    def flipped(self):
        """True when the columns run right to left."""
        top, bottom, left, right = self.valid_box()
        return np.diff(self.x[top:bottom, left:right], axis=1).mean() < 0


def assert_window_and_padding(decoded, label, crop_size, original, scales):
    """The image occupies a window of min(crop, round(side * s)) pixels for one of the
    ``scales``; everywhere else the image is 0 in every channel (the normalised pad value;
    no image pixel normalises to 0 in all three channels) and the label 255."""
    top, bottom, left, right = decoded.valid_box()
    windows = {tuple(min(crop_size, int(np.round(side * s))) for side in original.shape)
               for s in scales}
    assert (bottom - top, right - left) in windows
    assert decoded.pad.shape == (crop_size, crop_size)
    if label is not None:
        assert (label[decoded.pad] == IGNORE).all()


def exact_source_labels(decoded, original):
    """Scale 1: every image pixel decodes to integers forming a (mirrored) window of the
    original; returns the original label at each output pixel (255 on padding)."""
    top, bottom, left, right = decoded.valid_box()
    rgb = decoded.rgb[top:bottom, left:right]
    np.testing.assert_allclose(rgb, np.rint(rgb), atol=1e-3)
    x, y = decoded.x[top:bottom, left:right], decoded.y[top:bottom, left:right]
    step = -1 if decoded.flipped() else 1
    columns = x[0, 0] + step * np.arange(right - left)
    rows = y[0, 0] + np.arange(bottom - top)
    np.testing.assert_array_equal(x, np.broadcast_to(columns[None, :], x.shape))
    np.testing.assert_array_equal(y, np.broadcast_to(rows[:, None], y.shape))
    np.testing.assert_array_equal(decoded.region[top:bottom, left:right], original[y, x])
    out = np.full(decoded.pad.shape, IGNORE, np.int64)
    out[top:bottom, left:right] = original[y, x]
    return out


def constant_neighbourhood(original, radius=2):
    """True where the label is constant within ``radius`` pixels (edges clamp)."""
    padded = np.pad(original, radius, mode='edge')
    h, w = original.shape
    same = np.ones(original.shape, bool)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            same &= padded[dy:dy + h, dx:dx + w] == original
    return same


def certain_source_labels(decoded, original):
    """Any scale: (label the output pixel must have, whether it is certain). Certain are
    padding and pixels whose decoded position lies in a label-constant neighbourhood,
    where the bicubic image and the nearest-neighbour label cannot disagree."""
    h, w = original.shape
    x, y = np.clip(decoded.x, 0, w - 1), np.clip(decoded.y, 0, h - 1)
    expected = np.where(decoded.pad, IGNORE, original[y, x])
    certain = decoded.pad | constant_neighbourhood(original)[y, x]
    return expected, certain


def sample(dataset, seed, idx):
    random.seed(seed)
    return dataset[idx]


@pytest.mark.parametrize('from_gt', [False, True], ids=['pseudo_masks', 'gt'])
def test_segmentation_training_pairs_at_scale_one_are_exact(coded, from_gt):
    source, labels, label_dir = coded
    dataset = SegmentationTrainDataset(source, sorted(labels), None if from_gt else label_dir,
                                       crop_size=56, scales=(1.0,))
    flips = []
    for seed in SEEDS:
        for idx, name in enumerate(dataset.ids):
            pack = sample(dataset, seed, idx)
            decoded = Decoded(pack['img'])
            label = pack['label'].numpy()
            assert label.shape == (56, 56)
            assert_window_and_padding(decoded, label, 56, labels[name], dataset.scales)
            np.testing.assert_array_equal(label, exact_source_labels(decoded, labels[name]))
            flips.append(decoded.flipped())
    assert set(flips) == {True, False}


def test_segmentation_training_pairs_at_every_rescale_factor(coded):
    source, labels, label_dir = coded
    dataset = SegmentationTrainDataset(source, sorted(labels), label_dir, crop_size=56)
    flips, sizes, n_certain, n_valid = [], set(), 0, 0
    for seed in SEEDS:
        for idx, name in enumerate(dataset.ids):
            pack = sample(dataset, seed, idx)
            decoded = Decoded(pack['img'])
            label = pack['label'].numpy()
            assert_window_and_padding(decoded, label, 56, labels[name], dataset.scales)
            expected, certain = certain_source_labels(decoded, labels[name])
            np.testing.assert_array_equal(label[certain], expected[certain])
            flips.append(decoded.flipped())
            sizes.add(np.ptp(decoded.x[~decoded.pad]))
            n_certain += (certain & ~decoded.pad).sum()
            n_valid += (~decoded.pad).sum()
    assert set(flips) == {True, False}
    assert len(sizes) > 3                    # several rescale factors were drawn
    assert n_certain > 0.3 * n_valid


def irnet_dataset(coded, crop_size, rescale):
    source, labels, label_dir = coded
    path_index = PathIndex(radius=10, default_size=(crop_size // 4, crop_size // 4))
    return AffinityDataset(source, sorted(labels), label_dir, crop_size, path_index,
                           rescale=rescale)


def pair_labels(reduced, path_index):
    """(bg_pos, fg_pos, neg) of the pairs, from the reduced label map: both ends must be
    labelled (not 255); same label and 0 = BG-positive, same class = FG-positive."""
    flat = reduced.reshape(-1)
    src, dst = flat[path_index.src_indices][None, :], flat[path_index.dst_indices]
    labelled = (src != IGNORE) & (dst != IGNORE)
    same = src == dst
    return ((same & (src == 0) & labelled), (same & (src != 0) & labelled),
            (~same & labelled))


def reduced_by_four(label):
    """Nearest-neighbour 1/4 (PIL NEAREST takes the pixel at 4 i + 2)."""
    return label[2::4, 2::4]


def test_irnet_pair_labels_at_scale_one_are_exact(coded):
    crop_size = 96
    dataset = irnet_dataset(coded, crop_size, rescale=(1.0, 1.0))
    labels = coded[1]
    flips = []
    for seed in SEEDS:
        for idx, name in enumerate(dataset.ids):
            pack = sample(dataset, seed, idx)
            decoded = Decoded(pack['img'])
            assert_window_and_padding(decoded, None, crop_size, labels[name], (1.0,))
            reduced = reduced_by_four(exact_source_labels(decoded, labels[name]))
            for key, expected in zip(('aff_bg_pos_label', 'aff_fg_pos_label', 'aff_neg_label'),
                                     pair_labels(reduced, dataset.path_index)):
                np.testing.assert_array_equal(pack[key].numpy(), expected.astype(np.float32))
            flips.append(decoded.flipped())
    assert set(flips) == {True, False}


def test_irnet_pair_labels_under_random_rescale(coded):
    crop_size = 96
    dataset = irnet_dataset(coded, crop_size, rescale=(0.5, 1.0))
    labels = coded[1]
    flips, compared, total = [], 0, 0
    for seed in SEEDS:
        for idx, name in enumerate(dataset.ids):
            pack = sample(dataset, seed, idx)
            decoded = Decoded(pack['img'])
            expected, certain = certain_source_labels(decoded, labels[name])
            reduced, reduced_certain = reduced_by_four(expected), reduced_by_four(certain)
            flat = reduced_certain.reshape(-1)
            both = flat[dataset.path_index.src_indices][None, :] & \
                flat[dataset.path_index.dst_indices]
            for key, expected_pairs in zip(
                    ('aff_bg_pos_label', 'aff_fg_pos_label', 'aff_neg_label'),
                    pair_labels(reduced, dataset.path_index)):
                np.testing.assert_array_equal(pack[key].numpy()[both],
                                              expected_pairs[both].astype(np.float32))
            flips.append(decoded.flipped())
            compared += both.sum()
            total += both.size
    assert set(flips) == {True, False}
    assert compared > 0.4 * total
