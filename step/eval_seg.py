"""Evaluation of the segmentation network (METHOD.md stage 10).

Multi-scale (``--seg_eval_scales``) + flip inference: softmax probabilities
averaged over the scales and flips at the image size; optionally refined by
a dense CRF (``--seg_crf True``, DeepLab's settings). Writes the predictions
(grayscale and VOC-palette PNGs), ``work_space/eval_seg.json`` with mIoU and
per-class IoU (and the CRF variant), and, with ``--seg_submission True``, the
VOC server layout ``results/VOC2012/Segmentation/comp6_test_cls/<id>.png``
(for a split without ground truth, e.g. ``test``, only the PNGs are written).
"""
import os

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from data import build_source
from data.loaders import check_listed_images
from misc import dist, imutils
from misc.crf import crf_inference_prob
from misc.io import save_json, save_png
from misc.logutil import get_logger
from misc.metrics import confusion_matrix, iou_from_confusion, mean_iou
from misc.paths import in_work_space
from misc.report import comparison_table
from net.checkpoint import load_weights
from net.deeplab import ARCHITECTURES
from voc12.devkit import voc_palette

SUBMISSION_DIR = os.path.join('results', 'VOC2012', 'Segmentation', 'comp6_test_cls')


def multiscale_probs(model, img, scales, device):
    """Softmax probabilities [C, H, W] averaged over scales and horizontal flips."""
    h, w = img.shape[:2]
    total = None
    for s in scales:
        scaled = img if s == 1 else imutils.pil_rescale(img, s, 3)
        x = torch.from_numpy(np.ascontiguousarray(
            imutils.hwc_to_chw(imutils.imagenet_normalize(scaled))))[None].to(device)
        logits = model(torch.cat([x, x.flip(-1)]))
        logits = logits[0:1] + logits[1:2].flip(-1)
        probs = F.softmax(F.interpolate(logits / 2, (h, w), mode='bilinear',
                                        align_corners=False), dim=1)[0]
        total = probs if total is None else total + probs
    return (total / len(scales)).float().cpu().numpy()


def predictions(probs, img, use_crf):
    """{'plain': label map, 'crf': label map (when asked)}."""
    out = {'plain': probs.argmax(0).astype(np.uint8)}
    if use_crf:
        out['crf'] = crf_inference_prob(img, probs).argmax(0).astype(np.uint8)
    return out


def scores(confusions, label_names):
    result = {}
    for key, conf in confusions.items():
        iou = iou_from_confusion(conf)
        result[key] = {'miou': mean_iou(iou), 'iou': iou.tolist(),
                       'iou_by_class': dict(zip(label_names, iou.tolist())),
                       'confusion': conf.tolist()}
    return result


def run(args):
    log = get_logger()
    device = dist.resolve_device(args.device)
    source = build_source(args)
    ids = source.ids(args.seg_eval_set)
    check_listed_images(source, ids, args.seg_eval_set)
    n_class = source.n_classes + 1
    model = ARCHITECTURES[args.seg_arch](n_class)
    model = load_weights(model, in_work_space(args, args.seg_weights_name)).to(device).eval()
    out_dir = in_work_space(args, args.seg_out_dir)
    has_gt = all(os.path.isfile(source.mask_path(i)) for i in ids)
    variants = ['plain'] + (['crf'] if args.seg_crf else [])
    confusions = {v: np.zeros((n_class, n_class), np.int64) for v in variants}
    palette = voc_palette()
    with torch.no_grad():
        for image_id in tqdm(ids, desc='eval_seg', dynamic_ncols=True):
            img = source.read_image(image_id)
            preds = predictions(multiscale_probs(model, img, args.seg_eval_scales, device), img,
                                args.seg_crf)
            final = preds[variants[-1]]
            save_png(os.path.join(out_dir, image_id + '.png'), final)
            save_png(os.path.join(out_dir + '_color', image_id + '.png'), final, palette)
            if args.seg_submission:
                save_png(os.path.join(args.work_space, SUBMISSION_DIR, image_id + '.png'), final,
                         palette)
            if has_gt:
                gt = source.read_mask(image_id)
                for key, pred in preds.items():
                    confusions[key] += confusion_matrix(pred, gt, n_class)
    if not has_gt:
        log.info('eval_seg: %s has no ground truth; predictions -> %s', args.seg_eval_set, out_dir)
        return None
    result = {'dataset': source.name, 'split': args.seg_eval_set, 'n_images': len(ids),
              'arch': args.seg_arch, 'scales': list(args.seg_eval_scales),
              **scores(confusions, source.label_names)}
    result['miou'] = result[variants[-1]]['miou']
    save_json(os.path.join(args.work_space, 'eval_seg.json'), result)
    log.info('eval_seg on %s (%d images):\n%s', args.seg_eval_set, len(ids), comparison_table(
        source.label_names, [(v, result[v]['iou'], result[v]['miou']) for v in variants]))
    return result
