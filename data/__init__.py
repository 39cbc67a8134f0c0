"""Dataset abstraction: every stage reads images, labels and masks through a
:class:`data.base.SegmentationSource`, so a new dataset is one new module
(``voc12/``, ``coco14/``) and one entry of :mod:`data.registry`, not a copy of
every step."""
from data.base import SegmentationSource
from data.registry import DATASETS, dataset_entry

__all__ = ['DATASETS', 'SegmentationSource', 'dataset_entry']
