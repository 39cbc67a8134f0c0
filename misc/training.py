"""Pieces every training stage shares: resumable state, mixed precision."""
import contextlib
import io
import os

import torch

from misc.io import atomic_write


def save_train_state(path, model, optimizer, scheduler, epochs_done):
    """Atomically save what resuming needs after ``epochs_done`` epochs."""
    buf = io.BytesIO()
    torch.save({'model': model.state_dict(), 'optimizer': optimizer.state_dict(),
                'scheduler': scheduler.state_dict(), 'epochs_done': epochs_done}, buf)
    with atomic_write(path) as f:
        f.write(buf.getvalue())


def load_train_state(path, model, optimizer, scheduler, device):
    """Restore a saved state if ``path`` exists; returns the number of epochs done."""
    if not os.path.isfile(path):
        return 0
    state = torch.load(path, map_location=device, weights_only=True)
    model.load_state_dict(state['model'])
    optimizer.load_state_dict(state['optimizer'])
    scheduler.load_state_dict(state['scheduler'])
    return int(state['epochs_done'])


def autocast_context(device, enabled):
    """Mixed precision when ``enabled`` (fp16 on CUDA, bf16 on CPU), else a no-op."""
    if not enabled:
        return contextlib.nullcontext()
    dtype = torch.float16 if device.type == 'cuda' else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype)
