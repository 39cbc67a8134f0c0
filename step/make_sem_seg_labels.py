"""Pseudo masks by IRNet's random walk (docs/method.md#random-walk).

Per image: the boundary map of the image and its flip, the stride-4 CAMs
propagated with the sparse transition matrix (:mod:`wsss.random_walk`),
upsampled x4, divided by their GLOBAL max, background padded at
``--sem_seg_bg_thres``, argmax -> class ids. Reference behaviour kept: an
image whose CAMs are all zero gives 0/0 = NaN and the argmax labels it with
its first class. One grayscale PNG per image (and a copy in the dataset's palette with
``--sem_seg_color True``); resumable, atomic, sharded under torchrun. The
authors' ``.npy`` CAMs are read with ``--import_reference_cams True``; on
COCO the reference protocol covers the first 10,000 images of
``--infer_list`` (:mod:`coco14.protocol`).
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from coco14 import protocol
from data.loaders import MultiScaleDataset
from misc import dist
from misc.io import per_image_file, save_png
from misc.logutil import get_logger
from net.checkpoint import load_weights
from net.registry import cam_network
from net.resnet50_irn import edge_map
from pipeline import provenance
from pipeline.paths import in_work_space
from pipeline.stage import cam_files_of, pending_shard, prepare
from wsss.random_walk import propagate_to_edge


def random_walk_scores(cams, edge, size, beta, exp_times, bg_thres):
    """[K + 1, H, W] scores: background threshold, then the walked maps / global max."""
    rw = propagate_to_edge(cams, edge, beta=beta, exp_times=exp_times, radius=5)
    rw_up = F.interpolate(rw, scale_factor=4, mode='bilinear', align_corners=False)
    rw_up = rw_up[:, 0, :size[0], :size[1]]
    rw_up = rw_up / torch.max(rw_up)
    return F.pad(rw_up, (0, 0, 0, 0, 1, 0), value=bg_thres)


def pseudo_labels(cams, keys, edge, size, beta, exp_times, bg_thresholds):
    """[uint8 [H, W] class ids (0 background)] of one image, one per background
    threshold: the walk does not depend on it, so it runs once."""
    if len(keys) == 0:
        return [np.zeros(size, np.uint8) for _ in bg_thresholds]
    scores = random_walk_scores(cams, edge, size, beta, exp_times, bg_thresholds[0])
    lookup = np.pad(keys + 1, (1, 0), mode='constant')
    labels = []
    for bg_thres in bg_thresholds:
        scores[0] = bg_thres
        labels.append(lookup[torch.argmax(scores, dim=0).numpy()].astype(np.uint8))
    return labels


def pseudo_label(cams, keys, edge, size, args):
    """uint8 [H, W] class ids (0 background) of one image."""
    return pseudo_labels(cams, keys, edge, size, args.beta, args.exp_times,
                         [args.sem_seg_bg_thres])[0]


def run(args):
    log = get_logger()
    device, source, listed = prepare(args, args.infer_list)
    reference = protocol.reference_protocol(args.dataset, args.coco_protocol)
    ids = protocol.cam_image_ids(listed, reference)
    cam_files = cam_files_of(args)
    out_dir = in_work_space(args.work_space, args.sem_seg_out_dir)
    color_dir = out_dir + '_color' if args.sem_seg_color else None
    cam_files.require(ids, args.infer_list)
    weights = in_work_space(args.work_space, args.irn_weights_name)
    model = load_weights(cam_network(args.cam_network).irnet(), weights).to(device).eval()
    record = provenance.stage_record(
        'make_sem_seg', args, files={'irn_weights_name': weights},
        upstream={'cams': provenance.cams_record(cam_files),
                  'irn_weights_name': provenance.weights_record(weights)})
    provenance.claim_outputs(record, [out_dir, out_dir + '_color'], '.png', args.overwrite)
    todo, shard = pending_shard(ids, out_dir, '.png')
    log.info('make_sem_seg: %d images, %d done, %d in this process -> %s (beta %g, exp_times %d, '
             'bg %.2f)', len(ids), len(ids) - len(todo), len(shard), out_dir, args.beta,
             args.exp_times, args.sem_seg_bg_thres)
    loader = DataLoader(MultiScaleDataset(source, shard, (1.0,)), batch_size=1, shuffle=False,
                        num_workers=args.num_workers)
    palette = source.palette
    with torch.no_grad():
        for pack in tqdm(loader, desc='make_sem_seg', disable=not dist.is_main_process(),
                         dynamic_ncols=True):
            image_id = pack['name'][0]
            size = (int(pack['size'][0]), int(pack['size'][1]))
            edge = edge_map(model, pack['img'][0][0].to(device)).cpu()
            cams = cam_files.load(image_id, required=('keys', 'cam'))
            label = pseudo_label(torch.from_numpy(cams['cam']), cams['keys'], edge, size, args)
            if color_dir:
                save_png(per_image_file(color_dir, image_id, '.png'), label, palette)
            save_png(per_image_file(out_dir, image_id, '.png'), label)
    dist.barrier()
