"""torch Datasets over a :class:`data.base.SegmentationSource`.

Augmentation and multi-scale inputs follow the reference
(``voc12/dataloader.py`` of IRNet/QA-CLIMS; docs/method.md#baseline-cam-network,
docs/method.md#multi-scale-cams).
"""
import os
import random

import numpy as np
import torch
from torch.utils.data import Dataset

from misc import imutils
from misc.io import per_image_file, read_label_png


def check_listed_images(source, ids, list_name):
    """Fail up front, naming the files, when listed images are missing."""
    missing = [i for i in ids if not os.path.isfile(source.image_path(i))]
    if missing:
        raise FileNotFoundError('%d image(s) of %s are missing from %s, first: %s'
                                % (len(missing), list_name, source.root,
                                   ', '.join(source.image_path(i) for i in missing[:3])))


class ClassificationDataset(Dataset):
    """Training images with their multi-hot labels.

    Order of operations as in the reference: random long-side bicubic resize
    in ``resize_long``, ImageNet normalisation, random horizontal flip, crop
    (``random`` or ``top_left``) padded with 0, CHW.
    """

    def __init__(self, source, ids, resize_long=None, hor_flip=False, crop_size=None,
                 crop_method='random'):
        self.source = source
        self.ids = list(ids)
        self.resize_long = resize_long
        self.hor_flip = hor_flip
        self.crop_size = crop_size
        self.crop_method = crop_method
        self.labels = [source.image_labels(i) for i in self.ids]

    def __len__(self):
        return len(self.ids)

    def augment(self, img):
        if self.resize_long:
            img = imutils.random_resize_long(img, self.resize_long[0], self.resize_long[1])
        img = imutils.imagenet_normalize(img)
        if self.hor_flip:
            img = imutils.random_lr_flip(img)
        if self.crop_size:
            if self.crop_method == 'random':
                img = imutils.random_crop(img, self.crop_size, 0)
            else:
                img = imutils.top_left_crop(img, self.crop_size, 0)
        return np.ascontiguousarray(imutils.hwc_to_chw(img))

    def __getitem__(self, idx):
        image_id = self.ids[idx]
        img = self.augment(self.source.read_image(image_id))
        return {'name': image_id, 'img': torch.from_numpy(img),
                'label': torch.from_numpy(self.labels[idx])}


def multiscale_inputs(img, scales):
    """For each scale: [image, flipped image] as float32 [2, 3, h, w].

    Scale 1 keeps the image; others are PIL bicubic rescales of the uint8
    image to (round(H*s), round(W*s)), then ImageNet normalisation.
    """
    out = []
    for s in scales:
        chw = imutils.scaled_network_input(img, s)
        out.append(torch.from_numpy(np.ascontiguousarray(np.stack([chw, chw[:, :, ::-1]]))))
    return out


class MultiScaleDataset(Dataset):
    """Inference inputs of docs/method.md#multi-scale-cams (one image per item)."""

    def __init__(self, source, ids, scales):
        self.source = source
        self.ids = list(ids)
        self.scales = tuple(scales)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, idx):
        image_id = self.ids[idx]
        img = self.source.read_image(image_id)
        return {'name': image_id, 'img': multiscale_inputs(img, self.scales),
                'size': img.shape[:2], 'label': torch.from_numpy(self.source.image_labels(image_id))}


class SegmentationTrainDataset(Dataset):
    """Images with class-id label maps (pseudo masks or GT) for the segmentation network:
    rescale by one factor drawn from ``scales`` (deeplab-pytorch's augmentation),
    ImageNet normalisation, flip, random crop (image padded with 0, label with
    255 = ignored)."""

    def __init__(self, source, ids, label_dir, crop_size, scales=(0.5, 0.75, 1.0, 1.25, 1.5)):
        self.source = source
        self.ids = list(ids)
        self.label_dir = label_dir
        self.crop_size = crop_size
        self.scales = tuple(scales)

    def __len__(self):
        return len(self.ids)

    def label(self, image_id):
        """The pseudo mask of ``label_dir``, or the GT mask when ``label_dir`` is None."""
        if self.label_dir is None:
            return self.source.read_mask(image_id)
        return read_label_png(per_image_file(self.label_dir, image_id, '.png'))

    def __getitem__(self, idx):
        image_id = self.ids[idx]
        img, label = self.source.read_image(image_id), self.label(image_id)
        scale = random.choice(self.scales)
        img, label = imutils.pil_rescale(img, scale, 3), imutils.pil_rescale(label, scale, 0)
        img, label = imutils.random_lr_flip_pair(imutils.imagenet_normalize(img), label)
        img, label = imutils.random_crop_pair(img, label, self.crop_size)
        return {'name': image_id,
                'img': torch.from_numpy(np.ascontiguousarray(imutils.hwc_to_chw(img))),
                'label': torch.from_numpy(np.ascontiguousarray(label).astype(np.int64))}
