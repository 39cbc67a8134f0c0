"""What every stage does first: device, process group, dataset, image list,
and, for per-image outputs, which images are still to do in this process."""
import os

import torch

from data import build_source
from data.loaders import check_listed_images
from misc import dist
from misc.io import remove_partial_files


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
    """(todo, shard): images without ``<out_dir>/<id><suffix>`` and this process's share.

    Stale temporary files of a killed run are removed first (main process).
    """
    os.makedirs(out_dir, exist_ok=True)
    if dist.is_main_process():
        remove_partial_files(out_dir)
    dist.barrier()
    todo = [i for i in ids if not os.path.isfile(os.path.join(out_dir, i + suffix))]
    dist.barrier()              # every process has listed before any writes a new file
    return todo, todo[dist.rank()::dist.world_size()]

