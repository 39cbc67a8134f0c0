"""CAM evaluation (docs/method.md#cam-evaluation) on ``--chainer_eval_set``.

Only the images of that split are scored (and only their CAM files are
needed), whatever else ``--cam_out_dir`` holds. Background = a constant map
at the threshold, argmax, confusion against the GT (void ignored), IoU per
class and mIoU (nanmean). With ``--eval_cam_best True`` every threshold of
the reference sweep (VOC: 0.05, 0.06, ..., 0.59; COCO under
``--coco_protocol reference``: 0.10, 0.12, ..., 0.58) is scored in ONE pass
over the CAM files (:class:`wsss.metrics.ThresholdSweep`), and both the best
threshold and the one the reference's early-stopping loop reports are
recorded. On COCO the reference protocol scores the first 9,999 images of
the split (:mod:`coco14.protocol`). The authors' ``.npy`` CAMs are read with
``--import_reference_cams True``. Results go to ``work_space/eval_cam.json``.
On a folder dataset only the images with a mask are scored; without any,
scoring is skipped with a warning saying why.
"""
import os

import numpy as np
from tqdm import tqdm

from coco14 import protocol
from misc.io import save_json
from misc.logutil import get_logger
from pipeline import provenance
from pipeline.paths import in_work_space
from pipeline.report import class_scores, evaluated, iou_table
from pipeline.stage import build_source, cam_files_of, ids_to_score
from wsss.metrics import ThresholdSweep, among_predfg_bg, original_early_stop_best

SWEEP_THRESHOLDS = tuple(i / 100.0 for i in range(5, 60))


def reference_sweep(args):
    """The thresholds of the reference ``--eval_cam_best`` loop, ascending."""
    if protocol.reference_protocol(args.dataset, args.coco_protocol):
        return protocol.SWEEP_THRESHOLDS
    return SWEEP_THRESHOLDS


def sweep_thresholds(args):
    """The evaluated thresholds, ascending: the sweep (with --eval_cam_best) and --cam_eval_thres."""
    thresholds = set(reference_sweep(args)) if args.eval_cam_best else set()
    thresholds.add(args.cam_eval_thres)
    return sorted(thresholds)


def accumulate(source, ids, cam_files, thresholds):
    """One pass over the CAM files: a ThresholdSweep holding every confusion."""
    sweep = ThresholdSweep(thresholds, n_class=source.n_classes + 1)
    for image_id in tqdm(ids, desc='eval_cam', dynamic_ncols=True):
        cams = cam_files.load(image_id, required=('keys', 'high_res'))
        gt = source.read_mask(image_id)
        if cams['high_res'].shape[1:] != gt.shape:
            raise ValueError('%s: CAM size %s differs from the mask %s of size %s; the CAMs were '
                             'made from other images' % (cam_files.path(image_id),
                                                        cams['high_res'].shape[1:],
                                                        source.mask_path(image_id), gt.shape))
        sweep.add(cams['high_res'], cams['keys'], gt)
    return sweep


def sweep_summary(sweep, thresholds, args):
    """The sweep's [threshold, mIoU] rows, its best and the reference's early-stop pick.

    Only the reference sweep's thresholds take part (--cam_eval_thres is
    scored too but is not a step of the reference loop unless it is one of
    them).
    """
    mious = sweep.mious()
    rows = [(t, float(mious[thresholds.index(t)])) for t in reference_sweep(args)]
    sweep_t, sweep_m = zip(*rows)
    best = int(np.nanargmax(sweep_m))
    early_thres, early_miou = original_early_stop_best(sweep_m, sweep_t)
    return {'sweep': [list(row) for row in rows],
            'best': {'threshold': sweep_t[best], 'miou': sweep_m[best]},
            'original_early_stop_best': {'threshold': early_thres, 'miou': early_miou}}


def summarise(source, sweep, thresholds, args, n_images):
    main = sweep.result(thresholds.index(args.cam_eval_thres))
    result = {
        **evaluated(source, args.chainer_eval_set, n_images),
        'cam_out_dir': in_work_space(args.work_space, args.cam_out_dir),
        'threshold': args.cam_eval_thres,
        **class_scores(main['iou'], source.label_names),
        'among_predfg_bg': among_predfg_bg(main['confusion']),
        'confusion': main['confusion'].tolist(),
    }
    if source.name == 'coco14':
        result['coco_protocol'] = args.coco_protocol
    if args.eval_cam_best:
        result.update(sweep_summary(sweep, thresholds, args))
    return result


def run(args):
    log = get_logger()
    source = build_source(args)
    reference = protocol.reference_protocol(args.dataset, args.coco_protocol)
    listed = protocol.eval_cam_image_ids(source.ids(args.chainer_eval_set), reference)
    ids = ids_to_score(source, listed, args.chainer_eval_set, 'eval_cam')
    if not ids:
        return None
    cam_files = cam_files_of(args)
    cam_files.require(ids, args.chainer_eval_set)
    thresholds = sweep_thresholds(args)
    sweep = accumulate(source, ids, cam_files, thresholds)
    result = summarise(source, sweep, thresholds, args, len(ids))
    result['provenance'] = provenance.lineage(provenance.stage_record(
        'eval_cam', args, upstream={'cams': provenance.cams_record(cam_files)}))
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
