"""Dataset abstraction: every stage reads images, labels and masks through a
:class:`data.base.SegmentationSource`, so a new dataset is one new module
(``voc12/``, ``coco14/``) and one entry of :mod:`data.registry`, not a copy of
every step."""
from data.base import SegmentationSource
from data.registry import dataset_entry


def build_source(args):
    """The dataset named by ``args.dataset`` at the root the arguments give."""
    return dataset_entry(getattr(args, 'dataset', 'voc12')).build(args)


__all__ = ['SegmentationSource', 'build_source']
