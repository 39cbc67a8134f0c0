"""Masks for new images with the trained segmentation network (``tools/predict.py``,
run_sample stage ``predict``).

No dataset is needed: train_seg's weights file records the architecture, MSC
and the class names. The images are a folder or a glob (the id of an image is
its file name without the extension). Inference is eval_seg's: softmax
averaged over the scales (and the horizontal flip), optionally refined by the
dense CRF; images of the same size go through the network together, in
batches. Per image, in the output folder:

* ``masks/<id>.png``: class ids (0 background, 1.. the classes), grayscale;
* ``color/<id>.png``: the same as a palette PNG;
* ``overlay/<id>.png``: the image with the classes' colours blended in;

and ``predictions.json``: the class names and, per image, its file, size and
the fraction of its pixels each class found covers (background included).
Files are written atomically, the mask last, so a killed run resumes with the
images that have no mask yet; ``predict_settings.json`` records the weights'
checksum and the inference settings, and a run with others into the same
folder is refused (nothing is deleted). Under torchrun every process predicts
its share.
"""
import glob
import json
import os

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from data.folder import IMAGE_EXTENSIONS
from misc import dist
from misc.io import load_json, per_image_file, read_label_png, read_rgb, save_json, save_png
from misc.logutil import get_logger
from misc.palette import color_map
from net.checkpoint import load_weights, read_weights_metadata
from net.deeplab import ARCHITECTURES
from pipeline.paths import in_work_space
from pipeline.provenance import file_sha256
from pipeline.stage import pending_shard
from step.eval_seg import multiscale_probs, predictions

OUTPUT_DIRS = ('masks', 'color', 'overlay')
SETTINGS_FILE = 'predict_settings.json'
SUMMARY_FILE = 'predictions.json'
REQUIRED_METADATA = ('arch', 'msc', 'n_classes', 'class_names')
OVERLAY_ALPHA = 0.5
EVAL_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5)


def find_images(spec):
    """{image id: path}, sorted by id, of the images of a folder or a glob pattern."""
    if os.path.isdir(spec):
        paths = [os.path.join(spec, n) for n in os.listdir(spec) if not n.startswith('.')]
    else:
        paths = glob.glob(spec, recursive=True)
    paths = sorted(p for p in paths if os.path.isfile(p)
                   and os.path.splitext(p)[1].lower() in IMAGE_EXTENSIONS)
    if not paths:
        raise FileNotFoundError('no images (%s) match --images %s' % (
            ', '.join(IMAGE_EXTENSIONS), spec))
    found = {}
    for path in paths:
        image_id = os.path.splitext(os.path.basename(path))[0]
        if image_id in found:
            raise ValueError('%s and %s have the same id %r (the file name without its '
                             'extension names the outputs): rename one or narrow --images'
                             % (found[image_id], path, image_id))
        found[image_id] = path
    return dict(sorted(found.items()))


def load_predictor(weights_path):
    """(network in eval mode, class names, metadata) of train_seg's weights file."""
    if not os.path.isfile(weights_path):
        raise FileNotFoundError('segmentation weights %s do not exist (train_seg writes them)'
                                % weights_path)
    meta = read_weights_metadata(weights_path)
    missing = [k for k in REQUIRED_METADATA if k not in meta]
    if missing:
        raise ValueError('%s does not record %s: it was not written by this version\'s '
                         'train_seg (retrain it with --train_seg_pass True)'
                         % (weights_path, ', '.join(missing)))
    class_names = json.loads(meta['class_names'])
    if len(class_names) + 1 != int(meta['n_classes']):
        raise ValueError('%s records %s classes but %d class names' % (
            weights_path, meta['n_classes'], len(class_names)))
    if meta['arch'] not in ARCHITECTURES:
        raise ValueError('%s records the architecture %r; known: %s' % (
            weights_path, meta['arch'], ', '.join(ARCHITECTURES)))
    model = ARCHITECTURES[meta['arch']](int(meta['n_classes']), msc=meta['msc'] == 'True')
    return load_weights(model, weights_path).eval(), class_names, meta


def claim_output(out_dir, settings):
    """Record ``settings`` in ``out_dir``; refuse a folder holding predictions of others."""
    path = os.path.join(out_dir, SETTINGS_FILE)
    if os.path.isfile(path):
        recorded = load_json(path)
        if recorded != settings:
            differ = sorted(k for k in set(recorded) | set(settings)
                            if recorded.get(k) != settings.get(k))
            raise ValueError('%s holds predictions made with other settings (%s): use another '
                             '--out, or delete the folder to predict again'
                             % (out_dir, ', '.join('%s %s, now %s' % (
                                 k, recorded.get(k), settings.get(k)) for k in differ)))
    save_json(path, settings)


def size_batches(paths, ids, batch_size):
    """Lists of at most ``batch_size`` ids of images of the same size (in ``ids`` order)."""
    by_size = {}
    for image_id in ids:
        with Image.open(paths[image_id]) as img:
            by_size.setdefault(img.size, []).append(image_id)
    return [group[i:i + batch_size] for group in by_size.values()
            for i in range(0, len(group), batch_size)]


def overlay(img, label, palette, alpha=OVERLAY_ALPHA):
    """The image with each non-background pixel blended with its class colour."""
    colours = np.array(palette, np.float32).reshape(-1, 3)[label]
    blend = np.where((label > 0)[..., None], (1 - alpha) * img + alpha * colours, img)
    return np.clip(np.rint(blend), 0, 255).astype(np.uint8)


def write_outputs(out_dir, image_id, img, label, palette):
    """Colour, overlay, then the mask (its existence marks the image done)."""
    color, over, mask = (per_image_file(os.path.join(out_dir, kind), image_id, '.png')
                         for kind in ('color', 'overlay', 'masks'))
    save_png(color, label, palette)
    save_png(over, overlay(img, label, palette))
    save_png(mask, label)


def predict_batches(model, paths, batches, out_dir, settings, device, amp):
    """Predict and write every image of ``batches``."""
    palette = color_map()
    final = 'crf' if settings['crf'] else 'plain'
    with torch.no_grad():
        for batch in tqdm(batches, desc='predict', dynamic_ncols=True,
                          disable=not dist.is_main_process()):
            imgs = [read_rgb(paths[i]) for i in batch]
            probs = multiscale_probs(model, imgs, settings['scales'], device, amp,
                                     settings['flip'])
            for image_id, img, prob in zip(batch, imgs, probs):
                label = predictions(prob, img, settings['crf'])[final]
                write_outputs(out_dir, image_id, img, label, palette)


def summary(out_dir, paths, class_names):
    """predictions.json's content: per image, its file, size and class pixel fractions."""
    label_names = ['background'] + list(class_names)
    images = {}
    for image_id, path in paths.items():
        label = read_label_png(per_image_file(os.path.join(out_dir, 'masks'), image_id, '.png'))
        ids, counts = np.unique(label, return_counts=True)
        images[image_id] = {'file': os.path.abspath(path), 'size': list(label.shape),
                            'classes': {label_names[c]: n / label.size
                                        for c, n in zip(ids.tolist(), counts.tolist())}}
    return {'class_names': list(class_names), 'images': images}


def predict(images, weights, out_dir, scales=EVAL_SCALES, flip=True, crf=False, batch_size=1,
            device='auto', amp=False):
    """Masks of every image of ``images`` (folder or glob) in ``out_dir``; returns the
    summary written to ``<out_dir>/predictions.json`` (None in the other processes).
    The defaults are eval_seg's inference (``--seg_eval_scales``, flip, no CRF)."""
    log = get_logger()
    device = dist.resolve_device(device) if isinstance(device, str) else device
    dist.init_distributed(device)
    paths = find_images(images)
    model, class_names, meta = load_predictor(weights)
    settings = {'weights_sha256': file_sha256(weights), 'arch': meta['arch'],
                'msc': meta['msc'] == 'True', 'class_names': class_names,
                'scales': [float(s) for s in scales], 'flip': bool(flip), 'crf': bool(crf)}
    if dist.is_main_process():
        claim_output(out_dir, settings)
        for name in OUTPUT_DIRS:
            os.makedirs(os.path.join(out_dir, name), exist_ok=True)
    todo, shard = pending_shard(list(paths), os.path.join(out_dir, 'masks'), '.png')
    log.info('predict: %d images of %s, %d already predicted, %d in this process -> %s '
             '(%s%s, %d classes, scales %s, flip %s, CRF %s)', len(paths), images,
             len(paths) - len(todo), len(shard), out_dir, meta['arch'],
             ' MSC' if settings['msc'] else '', len(class_names), settings['scales'], flip, crf)
    predict_batches(model.to(device), paths, size_batches(paths, shard, batch_size), out_dir,
                    settings, device, amp)
    dist.barrier()
    result = None
    if dist.is_main_process():
        result = summary(out_dir, paths, class_names)
        save_json(os.path.join(out_dir, SUMMARY_FILE), result)
        log.info('predict: %d masks -> %s, summary %s', len(paths), out_dir,
                 os.path.join(out_dir, SUMMARY_FILE))
    dist.barrier()
    return result


def run(args):
    if not args.predict_images:
        raise ValueError('the predict stage needs --predict_images DIR_OR_GLOB (the images to '
                         'segment)')
    return predict(args.predict_images, in_work_space(args.work_space, args.seg_weights_name),
                   in_work_space(args.work_space, args.predict_out_dir), args.seg_eval_scales,
                   args.seg_eval_flip, args.seg_crf, args.predict_batch_size, args.device,
                   args.amp)
