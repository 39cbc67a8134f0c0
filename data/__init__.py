"""Dataset abstraction: every stage reads images, labels and masks through a
:class:`data.base.SegmentationSource`, so a new dataset is one new module
(``voc12/``, later ``coco14/``), not a copy of every step."""
from data.base import SegmentationSource


def build_source(args):
    """The dataset named by ``args.dataset`` at the root the arguments give."""
    name = getattr(args, 'dataset', 'voc12')
    if name == 'voc12':
        from voc12.devkit import VOC12
        return VOC12(args.voc12_root)
    if name == 'coco14':
        from coco14.dataset import COCO14
        return COCO14(getattr(args, 'mscoco_root', None))
    raise ValueError('unknown --dataset %r (available: voc12, coco14)' % name)


__all__ = ['SegmentationSource', 'build_source']
