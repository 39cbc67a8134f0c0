"""Which COCO images the stages cover: the authors' protocol or whole lists.

``--coco_protocol reference`` (the default with ``--dataset coco14``) follows
the authors' COCO flow (``step_coco/*``, ``mscoco/dataloader.py``):

* make_clims (and make_sem_seg) build ``COCOClassificationDatasetMSF``, which
  keeps ``coco.ids[:10000]``: the first 10,000 train2014 images in ascending
  image-id order (torchvision's ``CocoDetection`` sorts the ids). Here
  make_cam, make_clims and make_sem_seg take the first 10,000 images of their
  list in that order.
* eval_cam walks the whole train2014 set and stops at index 9,999
  (``eval_9999``), so it scores the first 9,999 images, one fewer than have
  CAMs. (Their parser defines no ``--eval_9999``, so the published step stops
  with an AttributeError; without the stop it would need CAMs of all 82,783
  images, which make_clims does not write: the stop is the only way it runs.)
* eval_cam's ``--eval_cam_best`` sweep is 0.10, 0.12, ..., 0.58
  (``np.arange(10, 60, 2) / 100``), with the same early stop as on VOC.
* cam_to_ir_label and eval_sem_seg walk the whole train2014 set, which
  cannot run on CAMs and pseudo masks made for 10,000 images; here they take
  the same first 10,000 as make_clims (the only choice that runs).

``--coco_protocol full`` uses every image of the lists and VOC's sweep
0.05..0.59. On VOC the flag has no effect.
"""
from misc.logutil import get_logger

CAM_IMAGES = 10000
EVAL_CAM_IMAGES = 9999
SWEEP_THRESHOLDS = tuple(t / 100 for t in range(10, 60, 2))
PROTOCOLS = ('reference', 'full')


def reference_protocol(dataset, coco_protocol):
    """True when the authors' COCO protocol applies: ``--dataset coco14`` with
    ``--coco_protocol reference``."""
    return dataset == 'coco14' and coco_protocol == 'reference'


def first_images(ids, n_images):
    """The first ``n_images`` ids in ascending COCO image-id order.

    Ids are file stems such as ``COCO_train2014_000000000009`` whose numbers
    are zero-padded, so the string order is the image-id order.
    """
    return sorted(ids)[:n_images]


def _protocol_ids(ids, n_images, reference):
    if not reference:
        return ids
    chosen = first_images(ids, n_images)
    if len(chosen) < len(ids):
        get_logger().info('--coco_protocol reference: the first %d of %d images',
                          len(chosen), len(ids))
    return chosen


def cam_image_ids(ids, reference):
    """The ids whose CAMs, confident regions and pseudo masks are made and scored
    (``reference``: :func:`reference_protocol`)."""
    return _protocol_ids(ids, CAM_IMAGES, reference)


def eval_cam_image_ids(ids, reference):
    """The ids eval_cam scores (``reference``: :func:`reference_protocol`)."""
    return _protocol_ids(ids, EVAL_CAM_IMAGES, reference)
