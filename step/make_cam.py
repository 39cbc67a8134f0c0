"""Multi-scale + flip CAMs of the baseline network (docs/method.md#multi-scale-cams).

One ``<cam_out_dir>/<image_id>.npz`` per image with ``keys`` (present class
ids, 0-based), ``cam`` (stride 4) and ``high_res`` (full size), each map
divided by its max + 1e-5. Images already done are skipped; files are
written atomically; under torchrun every process takes its own shard. On
COCO the reference protocol covers the first 10,000 images of
``--infer_list`` (:mod:`coco14.protocol`).
"""

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from coco14 import protocol
from data.loaders import MultiScaleDataset
from misc import dist
from misc.io import per_image_file, save_npz
from misc.logutil import get_logger
from net.checkpoint import load_weights
from net.registry import cam_network
from net.resnet50_cam import InferenceCAM
from pipeline import provenance
from pipeline.engine import autocast_context
from pipeline.paths import in_work_space
from pipeline.stage import build_source, pending_shard, prepare
from wsss.cam import present_class_cams


def image_cams(model, pack, device):
    """keys, strided cam and high-res cam of one MultiScaleDataset item."""
    size = (int(pack['size'][0]), int(pack['size'][1]))
    outputs = [model(img[0].to(device, non_blocking=True)).float().cpu() for img in pack['img']]
    return present_class_cams(outputs, size, pack['label'][0], model.stride)


def cpu_has_bf16_kernels():
    """True when oneDNN runs bf16 convolutions natively on this CPU (AVX512-BF16, AMX)."""
    probe = getattr(torch.ops.mkldnn, '_is_mkldnn_bf16_supported', None)
    return probe is not None and bool(probe())


def warn_if_bf16_is_emulated(device, amp):
    """bf16 autocast on a CPU without bf16 kernels runs emulated convolutions, slower
    than float32: say so."""
    if amp and device.type == 'cpu' and not cpu_has_bf16_kernels():
        get_logger().warning('WARNING: --amp True on a CPU without bf16 instructions: bf16 '
                             'convolutions are emulated and slower than float32 here; '
                             'pass --amp False')


def cams_record(args, stage, weights_flag, weights_path):
    """Provenance of the CAMs: the scales and the network's weights (and their record)."""
    return provenance.stage_record(stage, args, files={weights_flag: weights_path},
                                   upstream={weights_flag: provenance.weights_record(weights_path)})


def write_cams(args, model, out_dir, desc, record):
    """Shared body of make_cam and make_clims: compute and save the missing CAMs; CAMs
    made under another provenance ``record`` are redone."""
    log = get_logger()
    device, source, listed = prepare(args, args.infer_list)
    reference = protocol.reference_protocol(args.dataset, args.coco_protocol)
    ids = protocol.cam_image_ids(listed, reference)
    provenance.claim_outputs(record, [out_dir], '.npz', args.overwrite)
    todo, shard = pending_shard(ids, out_dir, '.npz')
    log.info('%s: %d images, %d already done, %d in this process -> %s',
             desc, len(ids), len(ids) - len(todo), len(shard), out_dir)
    warn_if_bf16_is_emulated(device, args.amp)
    network = InferenceCAM(model.eval()).to(device)
    loader = DataLoader(MultiScaleDataset(source, shard, args.cam_scales), batch_size=1,
                        shuffle=False, num_workers=args.num_workers)
    with torch.inference_mode(), autocast_context(device, args.amp):
        for pack in tqdm(loader, desc=desc, disable=not dist.is_main_process(), dynamic_ncols=True):
            keys, cam, high_res = image_cams(network, pack, device)
            save_npz(per_image_file(out_dir, pack['name'][0], '.npz'),
                     keys=keys, cam=cam, high_res=high_res)
    dist.barrier()


def run(args):
    weights = in_work_space(args.work_space, args.cam_weights_name)
    n_classes = build_source(args).n_classes
    model = load_weights(cam_network(args.cam_network).cam(n_classes), weights)
    write_cams(args, model, in_work_space(args.work_space, args.cam_out_dir), 'make_cam',
               cams_record(args, 'make_cam', 'cam_weights_name', weights))
