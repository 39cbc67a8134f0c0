"""torch.distributed helpers: one code path for a single process and for
``torchrun`` (DDP), on CPU (gloo) or CUDA (nccl)."""
import os

import torch
import torch.distributed as dist


def is_launched_distributed():
    """True when started by torchrun (WORLD_SIZE set and > 1)."""
    return int(os.environ.get('WORLD_SIZE', '1')) > 1


def init_distributed(device):
    """Initialise the process group when launched by torchrun; returns (rank, world_size)."""
    if not is_launched_distributed():
        return 0, 1
    if not dist.is_initialized():
        backend = 'nccl' if device.type == 'cuda' else 'gloo'
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size()


def rank():
    """This process's rank (torchrun's RANK before the group is initialised)."""
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get('RANK', '0'))


def world_size():
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main_process():
    return rank() == 0


def barrier():
    if dist.is_initialized():
        dist.barrier()


def shutdown():
    if dist.is_initialized():
        dist.destroy_process_group()


def resolve_device(name):
    """``--device``: 'auto' picks this process's CUDA device when present, else CPU."""
    if name == 'auto':
        if torch.cuda.is_available():
            return torch.device('cuda', int(os.environ.get('LOCAL_RANK', '0')))
        return torch.device('cpu')
    device = torch.device(name)
    if device.type == 'cuda' and device.index is None:
        device = torch.device('cuda', int(os.environ.get('LOCAL_RANK', '0')))
    return device


def all_reduce_sum(array, device):
    """Element-wise sum of a numpy array over all processes (itself when alone)."""
    if not dist.is_initialized():
        return array
    tensor = torch.from_numpy(array).to(device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu().numpy()
