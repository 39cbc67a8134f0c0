"""PASCAL VOC 2012 devkit folder (``VOCdevkit/VOC2012``), optionally with the
SBD-augmented masks in ``SegmentationClassAug`` (docs/method.md#datasets)."""
import functools
import os
import xml.etree.ElementTree as ET

from data.base import SegmentationSource, read_id_list
from data.registry import DATASETS

ENTRY = DATASETS['voc12']
# The object names of the XML annotations, in the class-id order of ENTRY.class_names.
XML_CLASS_NAMES = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat',
                   'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person',
                   'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor')
_XML_INDEX = {name: i for i, name in enumerate(XML_CLASS_NAMES)}


class VOC12(SegmentationSource):
    """Reads JPEGImages, Annotations (labels), ImageSets/Segmentation (splits),
    SegmentationClass and SegmentationClassAug (masks)."""

    name = ENTRY.name
    class_names = ENTRY.class_names
    class_aliases = ENTRY.text_aliases
    palette = ENTRY.palette

    def __init__(self, root):
        if not root:
            raise ValueError('no VOC root given: pass --voc12_root PATH/VOCdevkit/VOC2012')
        self.root = os.path.abspath(root)
        if not os.path.isdir(self.root):
            raise FileNotFoundError('VOC root %s does not exist: pass --voc12_root pointing at '
                                    'VOCdevkit/VOC2012' % self.root)
        for sub in ('JPEGImages', 'Annotations'):
            if not os.path.isdir(os.path.join(self.root, sub)):
                raise FileNotFoundError('VOC root %s has no %s folder: --voc12_root must point at '
                                        'VOCdevkit/VOC2012 (the folder holding JPEGImages, '
                                        'Annotations, ImageSets)' % (self.root, sub))

    def _path(self, *parts):
        return os.path.join(self.root, *parts)

    def image_path(self, image_id):
        return self._path('JPEGImages', image_id + '.jpg')

    def mask_path(self, image_id):
        """The VOC mask if there is one, else the SBD-augmented mask."""
        voc = self._path('SegmentationClass', image_id + '.png')
        if os.path.isfile(voc):
            return voc
        aug = self._path('SegmentationClassAug', image_id + '.png')
        return aug if os.path.isfile(aug) else voc

    def split_ids(self, split):
        """Ids of ``train``/``val``/``trainval`` (ImageSets) or ``train_aug``.

        ``train_aug`` is every id with a mask in SegmentationClassAug minus
        the ``val`` ids (10,582 images on the standard VOC + SBD download).
        """
        if split == 'train_aug':
            return self._train_aug_ids()
        path = self._path('ImageSets', 'Segmentation', split + '.txt')
        if not os.path.isfile(path):
            raise FileNotFoundError('split %r: %s does not exist (known splits: train, val, '
                                    'trainval, train_aug; or pass a list file path)'
                                    % (split, path))
        return read_id_list(path)

    def _train_aug_ids(self):
        aug_dir = self._path('SegmentationClassAug')
        if not os.path.isdir(aug_dir):
            raise FileNotFoundError('split train_aug needs the SBD masks in %s (the usual '
                                    'SegmentationClassAug download); without them use '
                                    '--train_list train' % aug_dir)
        val = set(self.split_ids('val'))
        ids = sorted(n[:-4] for n in os.listdir(aug_dir) if n.endswith('.png'))
        return [i for i in ids if i not in val]

    def image_label_ids(self, image_id):
        return _xml_label_ids(self._path('Annotations', image_id + '.xml'))


@functools.lru_cache(maxsize=None)
def _xml_label_ids(path):
    """Class ids named by the ``<object><name>`` tags of a VOC XML file.

    Names that are not VOC classes (the ``<part><name>hand</name>`` of
    person objects) are not object names and are not read.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError('annotation %s does not exist: image-level labels come from the '
                                'VOC XML annotations' % path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise ValueError('annotation %s is not valid XML (%s)' % (path, e)) from None
    names = [obj.findtext('name', '').strip() for obj in root.findall('object')]
    unknown = sorted(set(n for n in names if n not in _XML_INDEX))
    if unknown:
        raise ValueError('annotation %s names unknown classes %s' % (path, unknown))
    return tuple(sorted(set(_XML_INDEX[n] for n in names)))
