"""What every stage does first: device, process group, dataset, image list,
and, for per-image outputs, which images are still to do in this process.

:func:`build_source`, :func:`cam_files_of` and :func:`prepare` are where the environment
flags (``--dataset`` and its root flag, ``--work_space``, ``--cam_out_dir``,
``--device``, ``--seed``) are read; every other helper takes values
(docs/extending.md#layers)."""
import os

import torch

from data.loaders import check_listed_images
from data.registry import dataset_entry
from misc import dist
from misc.io import claim_output, is_complete_file, per_image_file, remove_partial_files
from misc.logutil import get_logger
from pipeline.paths import in_work_space
from wsss.cam import CamFiles


def build_source(args):
    """The dataset of ``--dataset`` (default voc12) at the folder of its root flag."""
    entry = dataset_entry(getattr(args, 'dataset', 'voc12'))
    return entry.build(getattr(args, entry.root_flag, None), getattr(args, 'work_space', None))


def cam_files_of(args):
    """The CAM files of ``--cam_out_dir`` that eval_cam, cam_to_ir_label and make_sem_seg
    read (the authors' ``.npy`` with ``--import_reference_cams True``)."""
    return CamFiles(in_work_space(args.work_space, args.cam_out_dir), args.import_reference_cams)


def prepare(args, image_list, seed=False):
    """(device, source, ids): the process group is initialised under torchrun and
    every listed image is checked to exist before any work."""
    device = dist.resolve_device(args.device)
    dist.init_distributed(device)
    if seed:
        torch.manual_seed(args.seed)
    source = build_source(args)
    ids = source.ids(image_list)
    check_listed_images(source, ids, image_list)
    return device, source, ids


def pending_shard(ids, out_dir, suffix):
    """(todo, shard): images without a readable ``<out_dir>/<id><suffix>`` and this
    process's share.

    The main process first claims ``out_dir`` (another live run writing it is
    an error naming that run, :func:`misc.io.claim_output`) and removes the
    temporary files of killed runs. An existing output counts as done only if
    a cheap check reads it (:func:`misc.io.is_complete_file`); the others are
    redone, and the log names them.
    """
    os.makedirs(out_dir, exist_ok=True)
    if dist.is_main_process():
        claim_output(out_dir)
        remove_partial_files(out_dir)
    dist.barrier()
    todo, unreadable = [], []
    for image_id in ids:
        path = per_image_file(out_dir, image_id, suffix)
        if not os.path.isfile(path):
            todo.append(image_id)
        elif not is_complete_file(path):
            todo.append(image_id)
            unreadable.append(path)
    if unreadable and dist.is_main_process():
        get_logger().warning('%d existing outputs in %s cannot be read (empty or truncated; '
                             'first: %s): redoing them', len(unreadable), out_dir, unreadable[0])
    dist.barrier()              # every process has listed before any writes a new file
    return todo, todo[dist.rank()::dist.world_size()]


def ids_to_score(source, ids, split, stage):
    """The images of ``ids`` that ``stage`` scores against their masks.

    All of them on a dataset whose masks are part of it (VOC, COCO: a missing
    mask is an error where it is read). On a dataset whose masks are optional
    (a folder dataset), those that have one: the stage says how many it
    leaves out, or, when none has a mask, that it is skipping scoring and why.
    """
    if not source.masks_optional:
        return list(ids)
    scored = [i for i in ids if source.has_mask(i)]
    log = get_logger()
    if not scored:
        log.warning('%s: skipping scoring: none of the %d images of %s has a mask (%s does not '
                    'exist, nor any other of the split); add masks/<id>.png to score. The '
                    'outputs are still written.', stage, len(ids), split,
                    source.mask_path(ids[0]))
    elif len(scored) < len(ids):
        unscored = sorted(set(ids) - set(scored))
        log.info('%s: scoring the %d of %d images of %s that have a mask (without one: %s%s)',
                 stage, len(scored), len(ids), split, ', '.join(unscored[:5]),
                 ', ...' if len(unscored) > 5 else '')
    return scored
