"""CAM evaluation (METHOD.md stage 6) on ``--chainer_eval_set``.

Background = a constant map at the threshold, argmax, confusion against the
GT (void ignored), IoU per class and mIoU (nanmean). With
``--eval_cam_best True`` every threshold 0.05, 0.06, ..., 0.59 is scored in
ONE pass over the CAM files (:class:`misc.metrics.ThresholdSweep`), and
both the best threshold and the one the reference's early-stopping loop
reports are recorded. Results go to ``work_space/eval_cam.json``.
"""
import os

import numpy as np
from tqdm import tqdm

from data import build_source
from misc.io import load_npz, save_json
from misc.logutil import get_logger
from misc.metrics import ThresholdSweep, among_predfg_bg, original_early_stop_best
from misc.paths import cam_out_dir
from misc.stage import require_cam_files
from misc.report import iou_table

SWEEP_THRESHOLDS = tuple(i / 100.0 for i in range(5, 60))


def sweep_thresholds(args):
    """The evaluated thresholds, ascending; always includes --cam_eval_thres."""
    thresholds = set(SWEEP_THRESHOLDS) if args.eval_cam_best else set()
    thresholds.add(args.cam_eval_thres)
    return sorted(thresholds)


def accumulate(source, ids, cam_dir, thresholds):
    """One pass over the CAM files: a ThresholdSweep holding every confusion."""
    sweep = ThresholdSweep(thresholds, n_class=source.n_classes + 1)
    for image_id in tqdm(ids, desc='eval_cam', dynamic_ncols=True):
        path = os.path.join(cam_dir, image_id + '.npz')
        cams = load_npz(path, required=('keys', 'high_res'))
        gt = source.read_mask(image_id)
        if cams['high_res'].shape[1:] != gt.shape:
            raise ValueError('%s: CAM size %s differs from the mask %s of size %s; the CAMs were '
                             'made from other images' % (path, cams['high_res'].shape[1:],
                                                        source.mask_path(image_id), gt.shape))
        sweep.add(cams['high_res'], cams['keys'], gt)
    return sweep


def summarise(source, sweep, thresholds, args, n_images):
    main = sweep.result(thresholds.index(args.cam_eval_thres))
    result = {
        'dataset': source.name, 'split': args.chainer_eval_set, 'n_images': n_images,
        'cam_out_dir': cam_out_dir(args), 'threshold': args.cam_eval_thres,
        'miou': main['miou'], 'iou': main['iou'].tolist(),
        'iou_by_class': dict(zip(source.label_names, main['iou'].tolist())),
        'among_predfg_bg': among_predfg_bg(main['confusion']),
        'confusion': main['confusion'].tolist(),
    }
    if args.eval_cam_best:
        mious = sweep.mious()
        best = int(np.nanargmax(mious))
        early_thres, early_miou = original_early_stop_best(mious, thresholds)
        result['sweep'] = [[t, m] for t, m in zip(thresholds, mious.tolist())]
        result['best'] = {'threshold': thresholds[best], 'miou': float(mious[best])}
        result['original_early_stop_best'] = {'threshold': early_thres, 'miou': early_miou}
    return result


def run(args):
    log = get_logger()
    source = build_source(args)
    ids = source.ids(args.chainer_eval_set)
    cam_dir = cam_out_dir(args)
    require_cam_files(ids, cam_dir, args.chainer_eval_set)
    thresholds = sweep_thresholds(args)
    sweep = accumulate(source, ids, cam_dir, thresholds)
    result = summarise(source, sweep, thresholds, args, len(ids))
    out = os.path.join(args.work_space, 'eval_cam.json')
    save_json(out, result)
    log.info('eval_cam on %s (%d images), threshold %.2f:\n%s', args.chainer_eval_set, len(ids),
             args.cam_eval_thres, iou_table(source.label_names, result['iou'], result['miou']))
    if args.eval_cam_best:
        log.info('best threshold %.2f: mIoU %.4f (reference early-stopping loop: %.2f, %.4f)',
                 result['best']['threshold'], result['best']['miou'],
                 result['original_early_stop_best']['threshold'],
                 result['original_early_stop_best']['miou'])
    log.info('eval_cam: -> %s', out)
    return result
