"""Evaluation of the segmentation network (docs/method.md#segmentation-evaluation-and-prediction).

Multi-scale (``--seg_eval_scales``) + flip (``--seg_eval_flip``) inference:
softmax probabilities averaged over the scales and flips at the image size
(each forward itself MSC-fused with ``--seg_msc``; deeplab-pytorch's own test
is ``--seg_eval_scales 1.0 --seg_eval_flip False``); optionally refined by
a dense CRF (``--seg_crf True``, DeepLab's settings). Predictions are written
per image and atomically (``<seg_out_dir>/`` without CRF, ``<seg_out_dir>_crf/``
with it, ``<seg_out_dir>_color/`` the final one in the dataset's palette), so a
killed run resumes where it stopped (predictions made with other weights or
inference settings, recorded in ``<seg_out_dir>.provenance.json``, are
removed and redone; :mod:`pipeline.provenance`); under torchrun every process predicts its
own share of the images and the confusion matrices are summed over processes.
``work_space/eval_seg.json`` holds mIoU and per-class IoU (and the CRF
variant). With ``--seg_submission True`` the final predictions are also written
in the VOC server layout ``results/VOC2012/Segmentation/comp6_test_cls/<id>.png``
(for a split without ground truth, e.g. ``test``, only the PNGs are written).
"""
import os

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from misc import dist, imutils
from misc.io import (atomic_write, per_image_file, read_label_png, remove_partial_files, save_json,
                     save_png)
from misc.logutil import get_logger
from net.checkpoint import load_weights, read_weights_metadata
from net.deeplab import ARCHITECTURES
from pipeline import provenance
from pipeline.engine import autocast_context
from pipeline.paths import in_work_space
from pipeline.report import class_scores, comparison_table, evaluated
from pipeline.stage import ids_to_score, pending_shard, prepare
from wsss.crf import crf_inference_prob
from wsss.metrics import confusion_matrix, iou_from_confusion

SUBMISSION_DIR = os.path.join('results', 'VOC2012', 'Segmentation', 'comp6_test_cls')


def multiscale_probs(model, imgs, scales, device, amp=False, flip=True):
    """Softmax probabilities [N, C, H, W] of N images of one size (uint8 [H, W, 3]
    each, one batch per scale) averaged over scales (of the logits averaged with
    those of the horizontally flipped images when ``flip``)."""
    n, (h, w) = len(imgs), imgs[0].shape[:2]
    total = None
    for s in scales:
        x = torch.from_numpy(np.stack([np.ascontiguousarray(imutils.scaled_network_input(img, s))
                                       for img in imgs])).to(device)
        with autocast_context(device, amp):
            logits = model(torch.cat([x, x.flip(-1)]) if flip else x).float()
        if flip:
            logits = (logits[:n] + logits[n:].flip(-1)) / 2
        probs = F.softmax(F.interpolate(logits, (h, w), mode='bilinear',
                                        align_corners=False), dim=1)
        total = probs if total is None else total + probs
    return (total / len(scales)).cpu().numpy()


def predictions(probs, img, use_crf):
    """{'plain': label map, 'crf': label map (when asked)}."""
    out = {'plain': probs.argmax(0).astype(np.uint8)}
    if use_crf:
        out['crf'] = crf_inference_prob(img, probs).argmax(0).astype(np.uint8)
    return out


def scored_variants(args):
    """The prediction variants eval_seg writes and scores, the final (reported) one last."""
    return ['plain'] + (['crf'] if args.seg_crf else [])


def final_prediction_dir(args):
    """The folder of the grayscale predictions of the final variant (``eval_seg.json``'s
    ``miou``)."""
    final = scored_variants(args)[-1]
    return prediction_dirs(args, [final])[final]


def prediction_dirs(args, variants):
    """{variant: folder of its grayscale PNGs}."""
    out_dir = in_work_space(args.work_space, args.seg_out_dir)
    return {v: out_dir if v == 'plain' else out_dir + '_' + v for v in variants}


def load_model(args, n_class, device):
    """The trained network; a weights file that records another architecture is refused."""
    path = in_work_space(args.work_space, args.seg_weights_name)
    if not os.path.isfile(path):
        raise FileNotFoundError('segmentation weights %s do not exist: run train_seg first '
                                '(--train_seg_pass True) or set --seg_weights_name' % path)
    trained_as = read_weights_metadata(path).get('arch')
    if trained_as is None:
        raise ValueError('%s does not record its architecture: it was not written by this '
                         'version\'s train_seg (retrain it with --train_seg_pass True)' % path)
    if trained_as != args.seg_arch:
        raise ValueError('%s was trained with --seg_arch %s; evaluate it with --seg_arch %s'
                         % (path, trained_as, trained_as))
    model = load_weights(ARCHITECTURES[args.seg_arch](n_class, msc=args.seg_msc), path)
    return model.to(device).eval()


def predictions_record(args):
    """Provenance of the predictions: the weights (and their record) and the inference
    settings; predictions made under another record are redone."""
    weights = in_work_space(args.work_space, args.seg_weights_name)
    return provenance.stage_record(
        'eval_seg', args, files={'seg_weights_name': weights},
        upstream={'seg_weights_name': provenance.weights_record(weights)})


def copy_submission(ids, color_dir, work_space):
    """The final colour predictions in the VOC server layout (this process's share)."""
    out_dir = os.path.join(work_space, SUBMISSION_DIR)
    for image_id in ids[dist.rank()::dist.world_size()]:
        with open(per_image_file(color_dir, image_id, '.png'), 'rb') as src:
            data = src.read()
        with atomic_write(per_image_file(out_dir, image_id, '.png')) as dst:
            dst.write(data)


def predict_images(model, source, ids, args, dirs, device):
    """Write every variant's PNG (the final variant's grayscale PNG last: it marks
    the image done) and the colour PNG."""
    variants = list(dirs)
    final = variants[-1]
    palette = source.palette
    with torch.no_grad():
        for image_id in tqdm(ids, desc='eval_seg', dynamic_ncols=True,
                             disable=not dist.is_main_process()):
            img = source.read_image(image_id)
            probs = multiscale_probs(model, [img], args.seg_eval_scales, device, args.amp,
                                     args.seg_eval_flip)[0]
            preds = predictions(probs, img, args.seg_crf)
            save_png(per_image_file(dirs[final] + '_color', image_id, '.png'), preds[final],
                     palette)
            for variant in variants:
                save_png(per_image_file(dirs[variant], image_id, '.png'), preds[variant])


def summed_confusions(source, ids, dirs, n_class, device):
    """{variant: confusion matrix over ``ids``}: each process reads its share of
    the written predictions, the matrices are summed over processes."""
    confusions = {}
    for variant, folder in dirs.items():
        conf = np.zeros((n_class, n_class), np.int64)
        for image_id in ids[dist.rank()::dist.world_size()]:
            pred = read_label_png(per_image_file(folder, image_id, '.png'))
            conf += confusion_matrix(pred, source.read_mask(image_id), n_class)
        confusions[variant] = dist.all_reduce_sum(conf, device)
    return confusions


def scores(confusions, label_names):
    """{variant: its class scores and confusion matrix}."""
    return {key: {**class_scores(iou_from_confusion(conf), label_names),
                  'confusion': conf.tolist()} for key, conf in confusions.items()}


def run(args):
    log = get_logger()
    device, source, ids = prepare(args, args.seg_eval_set)
    n_class = source.n_classes + 1
    model = load_model(args, n_class, device)
    variants = scored_variants(args)
    dirs = prediction_dirs(args, variants)
    color_dir = dirs[variants[-1]] + '_color'
    record = predictions_record(args)
    if dist.is_main_process():
        for folder in list(dirs.values()) + [color_dir]:
            remove_partial_files(folder)
    provenance.claim_outputs(record, list(dirs.values()) + [color_dir], '.png', args.overwrite)
    todo, shard = pending_shard(ids, dirs[variants[-1]], '.png')
    log.info('eval_seg: %d images of %s, %d already predicted, %d in this process -> %s',
             len(ids), args.seg_eval_set, len(ids) - len(todo), len(shard), dirs[variants[-1]])
    predict_images(model, source, shard, args, dirs, device)
    dist.barrier()
    if args.seg_submission:
        copy_submission(ids, color_dir, args.work_space)
        dist.barrier()
    scored = ids_to_score(source, ids, args.seg_eval_set, 'eval_seg')
    if not scored or not all(source.has_mask(i) for i in scored):
        log.info('eval_seg: %s has no ground truth; predictions -> %s', args.seg_eval_set,
                 dirs[variants[-1]])
        return None
    confusions = summed_confusions(source, scored, dirs, n_class, device)
    result = {**evaluated(source, args.seg_eval_set, len(scored)),
              'arch': args.seg_arch, 'msc': args.seg_msc, 'flip': args.seg_eval_flip,
              'scales': list(args.seg_eval_scales),
              **scores(confusions, source.label_names),
              'provenance': provenance.lineage(record)}
    result['miou'] = result[variants[-1]]['miou']
    if dist.is_main_process():
        save_json(os.path.join(args.work_space, 'eval_seg.json'), result)
        log.info('eval_seg on %s (%d images):\n%s', args.seg_eval_set, len(ids),
                 comparison_table(source.label_names,
                                  [(v, result[v]['iou'], result[v]['miou']) for v in variants]))
    dist.barrier()
    return result
