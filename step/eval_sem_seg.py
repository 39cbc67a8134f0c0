"""Pseudo-mask evaluation (docs/method.md#pseudo-mask-evaluation, reference
eval_sem_seg).

Only the images of ``--chainer_eval_set`` are scored (and only their
pseudo masks are needed), whatever else ``--sem_seg_out_dir`` holds; on COCO
the reference protocol scores the first 10,000 images of the split, those
make_sem_seg makes (:mod:`coco14.protocol`).
Predictions are the PNGs of ``--sem_seg_out_dir``; 255 in a prediction is
counted as background, GT void is ignored. Writes
``work_space/eval_sem_seg.json`` with mIoU (nanmean), per-class IoU and the
FP/FN rates the reference prints (their class mean is a plain mean: NaN as
soon as a class is absent, as in the reference). On a folder dataset only the
images with a mask are scored; without any, scoring is skipped with a warning.
"""
import os

import numpy as np
from tqdm import tqdm

from coco14 import protocol
from misc.io import per_image_file, read_label_png, save_json
from misc.logutil import get_logger
from pipeline import provenance
from pipeline.paths import in_work_space
from pipeline.report import class_scores, evaluated, iou_table
from pipeline.stage import build_source, ids_to_score
from wsss.metrics import confusion_matrix, fp_fn_rates


def read_prediction(path, shape):
    """A pseudo-mask PNG with 255 mapped to background; its size must match the GT."""
    pred = read_label_png(path).copy()
    if pred.shape != shape:
        raise ValueError('%s has size %s but the ground truth is %s' % (path, pred.shape, shape))
    pred[pred == 255] = 0
    return pred


def scored_image_ids(args, source):
    """The images whose pseudo masks are scored: those of ``--chainer_eval_set``
    make_sem_seg makes (the reference protocol on COCO) that have a mask."""
    reference = protocol.reference_protocol(args.dataset, args.coco_protocol)
    listed = protocol.cam_image_ids(source.ids(args.chainer_eval_set), reference)
    return ids_to_score(source, listed, args.chainer_eval_set, 'eval_sem_seg')


def run(args):
    log = get_logger()
    source = build_source(args)
    ids = scored_image_ids(args, source)
    if not ids:
        return None
    pred_dir = in_work_space(args.work_space, args.sem_seg_out_dir)
    missing = [i for i in ids if not os.path.isfile(per_image_file(pred_dir, i, '.png'))]
    if missing:
        raise FileNotFoundError('%d of %d pseudo masks are missing in %s (first: %s.png); run '
                                'make_sem_seg first' % (len(missing), len(ids), pred_dir, missing[0]))
    n_class = source.n_classes + 1
    conf = np.zeros((n_class, n_class), np.int64)
    for image_id in tqdm(ids, desc='eval_sem_seg', dynamic_ncols=True):
        gt = source.read_mask(image_id)
        pred = read_prediction(per_image_file(pred_dir, image_id, '.png'), gt.shape)
        conf += confusion_matrix(pred, gt, n_class)
    rates = fp_fn_rates(conf)
    result = {**evaluated(source, args.chainer_eval_set, len(ids)),
              'sem_seg_out_dir': pred_dir, **class_scores(rates['iou'], source.label_names),
              'fp': rates['fp'].tolist(), 'fn': rates['fn'].tolist(),
              'printed_fp0_fn0': rates['printed_fp0_fn0'],
              'printed_mean_fp_fn_fg': rates['printed_mean_fp_fn_fg'],
              'confusion': conf.tolist()}
    if source.name == 'coco14':
        result['coco_protocol'] = args.coco_protocol
    result['provenance'] = provenance.lineage(provenance.stage_record(
        'eval_sem_seg', args, upstream={'sem_seg': provenance.folder_record(pred_dir)}))
    out = os.path.join(args.work_space, 'eval_sem_seg.json')
    save_json(out, result)
    log.info('eval_sem_seg on %s (%d images):\n%s\nbackground FP %.4f FN %.4f; mean FG FP %.4f '
             'FN %.4f', args.chainer_eval_set, len(ids),
             iou_table(source.label_names, result['iou'], result['miou']),
             *rates['printed_fp0_fn0'], *rates['printed_mean_fp_fn_fg'])
    log.info('eval_sem_seg: -> %s', out)
    return result
