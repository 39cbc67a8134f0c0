"""Confident foreground/background regions for IRNet (docs/method.md#confident-regions).

From the high-res CAMs: FG-confident = argmax with background padded at
``--conf_fg_thres``, refined by a dense CRF; BG-confident the same at
``--conf_bg_thres``. Label = FG class (1..n_classes); 255 where the FG map says
background; 0 where both say background. One grayscale PNG per image in
``--ir_label_out_dir``; parallel over processes, resumable, atomic. The
authors' ``.npy`` CAMs are read with ``--import_reference_cams True``; on
COCO the reference protocol covers the first 10,000 images of
``--train_list`` (:mod:`coco14.protocol`).
"""
import multiprocessing

import numpy as np
from tqdm import tqdm

from coco14 import protocol
from misc import dist
from misc.io import per_image_file, save_png
from misc.logutil import get_logger
from pipeline import provenance
from pipeline.paths import in_work_space
from pipeline.stage import cam_files_of, pending_shard, prepare
from wsss.crf import crf_inference_label


def confident_label(img, high_res, keys, fg_thres, bg_thres):
    """uint8 [H, W]: 0 confident background, class id + 1, or 255 uncertain."""
    lookup = np.pad(keys + 1, (1, 0), mode='constant')

    def crf_label(threshold):
        padded = np.pad(high_res, ((1, 0), (0, 0), (0, 0)), mode='constant',
                        constant_values=threshold)
        return lookup[crf_inference_label(img, np.argmax(padded, axis=0), len(lookup))]

    fg = crf_label(fg_thres)
    bg = crf_label(bg_thres)
    conf = fg.copy()
    conf[fg == 0] = 255
    conf[bg + fg == 0] = 0
    return conf.astype(np.uint8)


def _label_one(job):
    source, image_id, cam_files, out_dir, fg_thres, bg_thres = job
    cams = cam_files.load(image_id, required=('keys', 'high_res'))
    conf = confident_label(source.read_image(image_id), cams['high_res'], cams['keys'],
                           fg_thres, bg_thres)
    save_png(per_image_file(out_dir, image_id, '.png'), conf)
    return image_id


def run(args):
    log = get_logger()
    _, source, listed = prepare(args, args.train_list)
    reference = protocol.reference_protocol(args.dataset, args.coco_protocol)
    ids = protocol.cam_image_ids(listed, reference)
    cam_files = cam_files_of(args)
    out_dir = in_work_space(args.work_space, args.ir_label_out_dir)
    cam_files.require(ids, args.train_list)
    record = provenance.stage_record('cam_to_ir_label', args,
                                     upstream={'cams': provenance.cams_record(cam_files)})
    provenance.claim_outputs(record, [out_dir], '.png', args.overwrite)
    todo, shard = pending_shard(ids, out_dir, '.png')
    log.info('cam_to_ir_label: %d images, %d done, %d in this process -> %s (fg %.2f, bg %.2f)',
             len(ids), len(ids) - len(todo), len(shard), out_dir, args.conf_fg_thres,
             args.conf_bg_thres)
    jobs = [(source, i, cam_files, out_dir, args.conf_fg_thres, args.conf_bg_thres) for i in shard]
    n_proc = max(1, min(args.num_workers, len(jobs)))
    bar = tqdm(total=len(jobs), desc='cam_to_ir_label', disable=not dist.is_main_process(),
               dynamic_ncols=True)
    if n_proc == 1:
        for job in jobs:
            _label_one(job)
            bar.update()
    else:
        with multiprocessing.get_context('spawn').Pool(n_proc) as pool:
            for _ in pool.imap_unordered(_label_one, jobs):
                bar.update()
    bar.close()
    dist.barrier()
