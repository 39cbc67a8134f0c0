"""Pieces every training stage shares: resumable state, mixed precision."""
import contextlib
import io
import os
import random

import torch
from torch.utils.data import DataLoader, DistributedSampler

from misc import dist
from misc.io import atomic_write, claim_output
from misc.logutil import get_logger
from net.checkpoint import save_weights, torch_load_tensors


def save_train_state(path, model, optimizer, scheduler, epochs_done):
    """Atomically save what resuming needs after ``epochs_done`` epochs."""
    buf = io.BytesIO()
    torch.save({'model': model.state_dict(), 'optimizer': optimizer.state_dict(),
                'scheduler': scheduler.state_dict(), 'epochs_done': epochs_done}, buf)
    with atomic_write(path) as f:
        f.write(buf.getvalue())


def checkpoint_epoch(path, model, optimizer, scheduler, epochs_done):
    """The main process saves the resumable state; every process waits for it."""
    if dist.is_main_process():
        save_train_state(path, model, optimizer, scheduler, epochs_done)
    dist.barrier()


def write_final_weights(model, path, stage, metadata=None):
    """The main process writes the trained weights (safetensors) and logs where."""
    if dist.is_main_process():
        save_weights(model, path, metadata)
        get_logger().info('%s: weights -> %s', stage, path)
    dist.barrier()


def load_train_state(path, model, optimizer, scheduler, device):
    """Restore a saved state if ``path`` exists; returns the number of epochs done.

    The main process first claims ``path``: another live run training into it
    is an error naming that run (:func:`misc.io.claim_output`).
    """
    if dist.is_main_process():
        claim_output(path)
    if not os.path.isfile(path):
        return 0
    state = torch_load_tensors(path, 'training state', 'delete it to start the training over',
                               map_location=device)
    try:
        model.load_state_dict(state['model'])
        optimizer.load_state_dict(state['optimizer'])
        scheduler.load_state_dict(state['scheduler'])
    except (KeyError, ValueError, RuntimeError) as e:
        raise ValueError('the training state %s does not fit this network / optimiser (%s); it '
                         'was saved by another configuration or version: delete it to start '
                         'over' % (path, str(e).splitlines()[0])) from None
    return int(state['epochs_done'])


def autocast_context(device, enabled):
    """Mixed precision when ``enabled`` (fp16 on CUDA, bf16 on CPU), else a no-op."""
    if not enabled:
        return contextlib.nullcontext()
    dtype = torch.float16 if device.type == 'cuda' else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype)


def epoch_loader(dataset, batch_per_rank, args, epoch, shuffle, drop_last):
    """DataLoader whose order and augmentation depend only on (seed, epoch, rank)."""
    sampler = DistributedSampler(dataset, num_replicas=dist.world_size(), rank=dist.rank(),
                                 shuffle=shuffle, seed=args.seed, drop_last=drop_last)
    sampler.set_epoch(epoch)
    seed = args.seed * 100003 + epoch * 1009 + dist.rank()
    random.seed(seed)
    return DataLoader(dataset, batch_size=batch_per_rank, sampler=sampler,
                      num_workers=args.num_workers, drop_last=drop_last,
                      generator=torch.Generator().manual_seed(seed),
                      pin_memory=torch.cuda.is_available())


def per_rank_batch(global_batch, flag='--cam_batch_size'):
    world = dist.world_size()
    if global_batch % world:
        raise ValueError('%s %d is not divisible by the %d processes'
                         % (flag, global_batch, world))
    return global_batch // world


def tensorboard_writer(args):
    """A SummaryWriter in work_space/tb when TensorBoard is installed, else None."""
    if not dist.is_main_process():
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(os.path.join(args.work_space, 'tb'))
