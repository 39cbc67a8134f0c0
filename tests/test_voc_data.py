"""VOC data layer: labels, splits, list files, augmentation, errors."""
import os
import random
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch

from conftest import REF, VOC_MINI, reference_ids
from data.base import read_id_list
from data.loaders import ClassificationDataset, MultiScaleDataset, check_listed_images
from misc import imutils
from voc12.devkit import VOC12


def test_xml_labels_match_reference_cls_labels():
    """Image-level labels equal the reference cls_labels.npy (built from the same XML)."""
    reference = np.load(REF / 'voc12' / 'cls_labels.npy', allow_pickle=True).item()
    source = VOC12(str(VOC_MINI))
    ids = source.ids('trainval')
    assert ids == reference_ids('trainval')
    assert sorted(reference) == sorted(int(i.replace('_', '')) for i in ids)
    for image_id in ids:
        key = int(image_id.replace('_', ''))
        np.testing.assert_array_equal(source.image_labels(image_id), reference[key])
    # a <part><name>hand</name> (person objects) is not a label
    with_parts = [i for i in ids if ET.parse(VOC_MINI / 'Annotations' / (i + '.xml'))
                  .getroot().find('object/part') is not None]
    assert with_parts
    for image_id in with_parts:
        expected = np.flatnonzero(reference[int(image_id.replace('_', ''))])
        assert source.image_label_ids(image_id) == tuple(int(c) for c in expected)


def test_splits_and_list_files(tmp_path):
    source = VOC12(str(VOC_MINI))
    assert source.ids('train') == read_id_list(str(REF / 'voc12' / 'train.txt'))
    assert source.ids('val') == reference_ids('val')
    first, last = reference_ids('trainval')[0], reference_ids('trainval')[-1]
    listed = tmp_path / 'mine.txt'
    listed.write_text('%s\n\n%s extra-column\n' % (last, first))
    assert source.ids(str(listed)) == [last, first]
    with pytest.raises(FileNotFoundError, match='nope.txt'):
        source.ids(str(tmp_path / 'nope.txt'))
    with pytest.raises(FileNotFoundError, match="split 'test'"):
        source.ids('test')


def test_train_aug_derived_from_sbd_masks(demo_voc):
    source = VOC12(demo_voc['root'])
    train_aug = source.ids('train_aug')
    val = set(source.ids('val'))
    assert not val & set(train_aug)
    assert set(source.ids('train')) < set(train_aug)
    assert set(demo_voc['aug_only']) <= set(train_aug)
    # SBD-only images have no VOC mask: the augmented mask is used
    only = demo_voc['aug_only'][0]
    assert source.mask_path(only).endswith(os.path.join('SegmentationClassAug', only + '.png'))


def test_train_aug_without_sbd_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match='SegmentationClassAug.*--train_list train'):
        VOC12(str(VOC_MINI)).ids('train_aug')


def test_missing_dataset_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match='does not exist.*--voc12_root'):
        VOC12(str(tmp_path / 'nowhere'))
    (tmp_path / 'VOC2012').mkdir()
    with pytest.raises(FileNotFoundError, match='no JPEGImages folder'):
        VOC12(str(tmp_path / 'VOC2012'))


def copy_voc_mini(tmp_path):
    root = tmp_path / 'voc'
    shutil.copytree(VOC_MINI, root)
    for path in root.rglob('*'):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


def test_listed_but_absent_image_is_named(tmp_path):
    root = copy_voc_mini(tmp_path)
    absent = reference_ids('train')[-1]
    (root / 'JPEGImages' / (absent + '.jpg')).unlink()
    source = VOC12(str(root))
    with pytest.raises(FileNotFoundError, match=absent + '.jpg'):
        check_listed_images(source, source.ids('train'), 'train')
    with pytest.raises(FileNotFoundError, match=absent + '.jpg'):
        source.read_image(absent)


def test_corrupt_image_is_named(tmp_path):
    root = copy_voc_mini(tmp_path)
    image_id = reference_ids('trainval')[0]
    path = root / 'JPEGImages' / (image_id + '.jpg')
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ValueError, match=image_id + '.jpg cannot be decoded'):
        VOC12(str(root)).read_image(image_id)
    path.write_bytes(b'not an image at all')
    with pytest.raises(ValueError, match=image_id + '.jpg cannot be decoded'):
        VOC12(str(root)).read_image(image_id)


def test_missing_annotation_is_named(tmp_path):
    root = copy_voc_mini(tmp_path)
    image_id = reference_ids('val')[0]
    (root / 'Annotations' / (image_id + '.xml')).unlink()
    with pytest.raises(FileNotFoundError, match=image_id + '.xml'):
        VOC12(str(root)).image_labels(image_id)


def test_decoding_matches_reference_reader():
    decoded = np.load(REF / 'voc_mini_decoded_rgb.npz')
    source = VOC12(str(VOC_MINI))
    for image_id in source.ids('trainval'):
        np.testing.assert_array_equal(source.read_image(image_id), decoded[image_id])


def test_normalisation_is_float64_math_stored_as_float32():
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 13
    out = imutils.imagenet_normalize(img)
    expected = ((img / 255. - np.array(imutils.IMAGENET_MEAN)) / np.array(imutils.IMAGENET_STD))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, expected.astype(np.float32))


def test_random_crop_pads_with_zero_and_keeps_content():
    random.seed(0)
    img = np.ones((5, 9, 3), np.float32)
    crop = imutils.random_crop(img, 8, 0)
    assert crop.shape == (8, 8, 3)
    assert crop.sum() == 5 * 8 * 3          # all of the 5 rows, 8 of the 9 columns
    assert set(np.unique(crop)) == {0.0, 1.0}


def test_training_augmentation_shapes_and_determinism():
    source = VOC12(str(VOC_MINI))
    ds = ClassificationDataset(source, source.ids('train'), resize_long=(40, 80),
                               hor_flip=True, crop_size=64)
    random.seed(5)
    first = ds[0]
    random.seed(5)
    again = ds[0]
    assert tuple(first['img'].shape) == (3, 64, 64)
    assert first['img'].dtype == torch.float32
    assert np.array_equal(first['img'].numpy(), again['img'].numpy())
    np.testing.assert_array_equal(first['label'].numpy(), source.image_labels(first['name']))


def test_random_resize_long_range():
    random.seed(1)
    img = np.zeros((100, 50, 3), np.uint8)
    for _ in range(20):
        out = imutils.random_resize_long(img, 30, 60)
        assert 30 <= max(out.shape[:2]) <= 60


def test_multiscale_inputs_are_pil_bicubic_and_flipped():
    source = VOC12(str(VOC_MINI))
    image_id = reference_ids('val')[0]
    scales = (1.0, 0.5, 1.5)
    item = MultiScaleDataset(source, [image_id], scales)[0]
    img = source.read_image(image_id)
    height, width = img.shape[:2]
    assert item['size'] == (height, width)
    shapes = [tuple(x.shape) for x in item['img']]
    assert shapes == [(2, 3, int(np.round(height * s)), int(np.round(width * s))) for s in scales]
    half = imutils.imagenet_normalize(imutils.pil_rescale(img, 0.5, 3)).transpose(2, 0, 1)
    np.testing.assert_array_equal(item['img'][1][0].numpy(), half)
    np.testing.assert_array_equal(item['img'][1][1].numpy(), half[:, :, ::-1])
