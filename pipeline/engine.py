"""The training engine of the four training stages (docs/method.md#the-training-engine).

A stage supplies its dataset, its model with optimiser and schedule, and a
per-batch loss; :class:`Training` does the rest: device and process group,
the batch per process, the sampler and its seeds, resume, DDP and
SyncBatchNorm, mixed precision with loss scaling where fp16 needs it, tqdm,
the log and optional TensorBoard scalars, a resumable state after every
epoch and the final weights.
"""
import contextlib
import io
import os
import random

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from misc import dist
from misc.io import atomic_write, claim_output
from misc.logutil import get_logger
from net.checkpoint import save_weights, torch_load_tensors
from net.resnet50 import FixedBatchNorm
from pipeline import provenance
from pipeline.paths import train_state_path
from pipeline.stage import prepare


def amp_dtype(device_type):
    """The autocast dtype of ``--amp``: fp16 on CUDA, bf16 elsewhere."""
    return torch.float16 if device_type == 'cuda' else torch.bfloat16


def needs_grad_scaler(device_type, amp):
    """Loss scaling is needed for fp16 autocast only: fp16 gradients underflow, bf16 has
    float32's exponent range and float32 needs none (docs/method.md#the-training-engine)."""
    return bool(amp) and amp_dtype(device_type) == torch.float16


def autocast_context(device, enabled):
    """Mixed precision when ``enabled`` (:func:`amp_dtype`), else a no-op."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=amp_dtype(device.type))


def save_train_state(path, model, optimizer, scheduler, epochs_done):
    """Atomically save what resuming needs after ``epochs_done`` epochs (docs/formats.md)."""
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


def seed_augmentation(seed, epoch):
    """Seed python's ``random`` (the datasets' augmentation) for (seed, epoch, rank);
    returns the seed, which also seeds the loader's generator."""
    value = seed * 100003 + epoch * 1009 + dist.rank()
    random.seed(value)
    return value


def epoch_loader(dataset, batch_per_rank, args, epoch, shuffle, drop_last):
    """DataLoader whose order and augmentation depend only on (seed, epoch, rank)."""
    sampler = DistributedSampler(dataset, num_replicas=dist.world_size(), rank=dist.rank(),
                                 shuffle=shuffle, seed=args.seed, drop_last=drop_last)
    sampler.set_epoch(epoch)
    seed = seed_augmentation(args.seed, epoch)
    return DataLoader(dataset, batch_size=batch_per_rank, sampler=sampler,
                      num_workers=args.num_workers, drop_last=drop_last,
                      generator=torch.Generator().manual_seed(seed),
                      pin_memory=torch.cuda.is_available())


def per_rank_batch(global_batch, flag):
    """Each process's share of the global batch ``flag``; it must divide evenly."""
    world = dist.world_size()
    if global_batch % world:
        raise ValueError('%s %d is not divisible by the %d processes'
                         % (flag, global_batch, world))
    return global_batch // world


def steps_per_epoch(n_images, world, batch_per_rank, accumulate=1):
    """Optimisation steps in one pass of :func:`epoch_loader` (incomplete batches and
    incomplete groups of ``accumulate`` micro-batches dropped)."""
    return n_images // world // batch_per_rank // accumulate


def full_groups(iterable, size):
    """Consecutive lists of ``size`` items; an incomplete last group is dropped."""
    group = []
    for item in iterable:
        group.append(item)
        if len(group) == size:
            yield group
            group = []


def uses_batch_statistics(model):
    """True when some BatchNorm normalises with batch statistics in training;
    :class:`net.resnet50.FixedBatchNorm` is frozen and must not become SyncBatchNorm."""
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
               and not isinstance(m, FixedBatchNorm) for m in model.modules())


def distributed(model, device):
    """``model`` as trained by this process: under torchrun DDP, with SyncBatchNorm on
    GPUs when it uses batch statistics (the parameters stay those of ``model``).

    torch's SyncBatchNorm runs on CUDA only: DDP on CPU processes (gloo) keeps
    per-process batch statistics, and says so.
    """
    if dist.world_size() == 1:
        return model
    if uses_batch_statistics(model):
        if device.type == 'cuda':
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            get_logger().warning('WARNING: DDP on CPU: BatchNorm statistics are per process '
                                 '(SyncBatchNorm needs CUDA)')
    return DistributedDataParallel(model)


def tensorboard_writer(folder, enabled):
    """A SummaryWriter into ``folder`` on the main process when ``enabled``, else None.

    TensorBoard is imported only here, so it is needed only with ``--tensorboard``.
    """
    if not enabled or not dist.is_main_process():
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ImportError('--tensorboard True needs the tensorboard package: pip install '
                          'tensorboard (it is in requirements.txt), or pass --tensorboard '
                          'False') from None
    return SummaryWriter(folder)


class Optimiser:
    """One optimisation step: the loss of each micro-batch under autocast, loss scaling
    (:func:`needs_grad_scaler`), optional gradient-norm clipping, then the optimiser and
    schedule steps. The gradients stay in ``.grad`` afterwards."""

    def __init__(self, optimizer, scheduler, device, amp=False, grad_clip=0.0):
        self.optimizer, self.scheduler, self.device = optimizer, scheduler, device
        self.amp, self.grad_clip = amp, grad_clip
        self.scaler = torch.amp.GradScaler(device.type,
                                           enabled=needs_grad_scaler(device.type, amp))

    def forward(self, net):
        """``net`` called under this run's autocast."""
        def run(x):
            with autocast_context(self.device, self.amp):
                return net(x)
        return run

    def on_device(self, pack):
        return {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v
                for k, v in pack.items()}

    def step(self, net, micro_batches, loss):
        """Step on the summed gradient of ``loss(forward, pack)['loss'] / n`` over the n
        micro-batches (DDP synchronises on the last only); returns each term summed
        the same way, as floats."""
        self.optimizer.zero_grad()
        forward, summed = self.forward(net), {}
        for i, pack in enumerate(micro_batches):
            last = i == len(micro_batches) - 1
            sync = net.no_sync() if isinstance(net, DistributedDataParallel) and not last \
                else contextlib.nullcontext()
            with sync:
                terms = {k: v / len(micro_batches) for k, v in
                         loss(forward, self.on_device(pack)).items()}
                self.scaler.scale(terms['loss']).backward()
            for key, value in terms.items():
                summed[key] = summed.get(key, 0.0) + value.item()
        if self.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(net.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return summed


def start(stage, args, image_list):
    """(training, source, ids): the device and process group set up, the seed set and
    every image of ``image_list`` checked (:func:`pipeline.stage.prepare`)."""
    device, source, ids = prepare(args, image_list, seed=True)
    return Training(stage, args, device, image_list), source, ids


class Training:
    """One stage's training run on ``device`` (docs/method.md#the-training-engine):
    :meth:`plan` fixes the dataset and the batch, :meth:`fit` trains. ``args``: the
    flags the engine reads (seed, num_workers, amp, tensorboard, overwrite, work_space).
    """

    def __init__(self, stage, args, device, image_list):
        self.stage, self.args, self.device, self.image_list = stage, args, device, image_list
        self.log = get_logger()

    def plan(self, dataset, global_batch, flag, accumulate=1):
        """Optimisation steps per epoch of ``dataset`` at the global batch ``flag``
        (``accumulate`` micro-batches per step); too few images is an error."""
        self.dataset, self.global_batch, self.accumulate = dataset, global_batch, accumulate
        self.batch = per_rank_batch(global_batch, flag)
        self.steps_per_epoch = steps_per_epoch(len(dataset), dist.world_size(), self.batch,
                                               accumulate)
        if self.steps_per_epoch == 0:
            raise ValueError('%s has %d images, fewer than one iteration needs (%s %d%s)'
                             % (self.image_list, len(dataset), flag, global_batch,
                                ' x %d accumulated' % accumulate if accumulate > 1 else ''))
        return self.steps_per_epoch

    def fit(self, model, optimizer, scheduler, loss, weights_path, record, max_steps,
            grad_clip=0.0, saved=None, summary=None, before_saving=None, metadata=None,
            describe=''):
        """Train ``model`` for ``max_steps`` optimisation steps with ``loss(forward, pack)``
        (a dict of scalar tensors with the ``'loss'`` to minimise), resuming from the state
        beside ``weights_path`` when it was trained from ``record``; then write the
        weights of ``saved`` (default ``model``) and their record.

        ``summary()``: extra text for each epoch's log line; ``before_saving(saved)``:
        last changes to the weights; both on the main process only. ``describe``: the end
        of the log line that opens the training. ``metadata``: safetensors metadata.
        """
        saved = model if saved is None else saved
        state_path = train_state_path(weights_path)
        provenance.claim_train_state(state_path, record, self.args.overwrite)
        epoch = load_train_state(state_path, saved, optimizer, scheduler, self.device)
        if epoch:
            self.log.info('%s: resuming after epoch %d (at iteration %d) from %s', self.stage,
                          epoch, scheduler.last_epoch, state_path)
        net = distributed(model, self.device)
        optimiser = Optimiser(optimizer, scheduler, self.device, self.args.amp, grad_clip)
        writer = tensorboard_writer(os.path.join(self.args.work_space, 'tb', self.stage),
                                    self.args.tensorboard)
        self.log.info('%s: %d images, %d steps/epoch, %d steps, batch %d (%d per process)%s%s',
                      self.stage, len(self.dataset), self.steps_per_epoch, max_steps,
                      self.global_batch, self.batch,
                      ' x %d accumulated' % self.accumulate if self.accumulate > 1 else '',
                      describe)
        net.train()
        bar = tqdm(total=max_steps, initial=scheduler.last_epoch, desc=self.stage,
                   disable=not dist.is_main_process(), dynamic_ncols=True)
        while scheduler.last_epoch < max_steps:
            loader = epoch_loader(self.dataset, self.batch, self.args, epoch, True, True)
            for micro_batches in full_groups(loader, self.accumulate):
                if scheduler.last_epoch >= max_steps:
                    break
                terms = optimiser.step(net, micro_batches, loss)
                bar.update()
                bar.set_postfix({k: '%.4f' % v for k, v in terms.items()})
                if writer is not None:
                    for key, value in terms.items():
                        writer.add_scalar('%s/%s' % (self.stage, key), value,
                                          scheduler.last_epoch)
            epoch += 1
            self.log.info('%s epoch %d: %s%s (iteration %d)', self.stage, epoch,
                          ', '.join('%s %.4f' % kv for kv in terms.items()),
                          summary() if summary and dist.is_main_process() else '',
                          scheduler.last_epoch)
            checkpoint_epoch(state_path, saved, optimizer, scheduler, epoch)
        bar.close()
        if writer is not None:
            writer.close()
        if before_saving is not None and dist.is_main_process():
            before_saving(saved)
        write_final_weights(saved, weights_path, self.stage, metadata)
        provenance.write_weights_record(weights_path, record)
        return saved
