"""Baseline CAM network training (docs/method.md#baseline-cam-network).

The authors' recipe: ``net.resnet50_cam.Net`` on the ``--cam_network``
backbone (ResNet-50; only conv1/bn1 frozen, no stage detached;
``--cam_detach_early_stages True`` for IRNet's variant),
multilabel soft-margin loss on globally pooled logits, SGD with the
reference's effective settings (see :func:`misc.torchutils.reference_poly_sgd`)
over all backbone tensors at the lr and the classifier at 10x. Saves a
resumable training state after every epoch and the final weights as
safetensors. Under torchrun it runs DDP with ``--cam_batch_size`` as the
global batch.
"""
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from data.loaders import ClassificationDataset
from misc import dist
from misc.logutil import get_logger
from misc.torchutils import reference_poly_sgd
from net.registry import cam_network
from net.resnet50 import estimate_batchnorm_statistics
from pipeline import provenance
from pipeline.paths import in_work_space, train_state_path
from pipeline.stage import prepare
from pipeline.training import (autocast_context, checkpoint_epoch, epoch_loader, load_train_state,
                            per_rank_batch, write_final_weights)


def build_training(args, n_classes, max_step, device):
    """(model, optimizer, scheduler) of the recipe, the model in training mode.

    Random initial weights: :func:`initialise_weights` (or a test) loads
    weights into the same tensors in place afterwards.
    """
    model = cam_network(args.cam_network).baseline(
        n_classes, detach_early_stages=args.cam_detach_early_stages).to(device)
    optimizer, scheduler = reference_poly_sgd(
        model.optimizer_groups(args.cam_learning_rate, args.cam_weight_decay),
        args.cam_weight_decay, max_step, fix_momentum_quirk=args.fix_momentum_quirk)
    return model.train(), optimizer, scheduler


def initialise_weights(model, args, dataset, device):
    """ImageNet backbone weights, or (random backbone) BN statistics estimated on the data."""
    if args.imagenet_weights:
        model.backbone.load_imagenet_weights(args.imagenet_weights)
        return
    get_logger().warning('WARNING: no --imagenet_weights given: the backbone starts from a '
                         'random initialisation with BatchNorm statistics estimated on the '
                         'training images (fine for the demo and tests, not for reproducing '
                         'the paper)')
    loader = DataLoader(dataset, batch_size=min(len(dataset), 16), shuffle=False)
    estimate_batchnorm_statistics(model, (pack['img'].to(device) for pack in loader))


def batch_loss(net, pack, device, amp=False):
    """(logits [N, n_classes], multilabel soft-margin loss) of a batch."""
    with autocast_context(device, amp):
        logits = net(pack['img'].to(device, non_blocking=True))
        loss = F.multilabel_soft_margin_loss(logits.float(), pack['label'].to(device))
    return logits, loss


def train_step(net, pack, optimizer, scheduler, scaler, device, amp=False):
    """One SGD step on a batch; returns (logits, loss). The gradients stay in ``.grad``."""
    logits, loss = batch_loss(net, pack, device, amp)
    optimizer.zero_grad()
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    return logits, loss


def validate(model, dataset, args, device):
    """Mean multilabel soft-margin loss on the validation images (main process)."""
    loader = DataLoader(dataset, batch_size=args.cam_batch_size, shuffle=False,
                        num_workers=args.num_workers)
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for pack in loader:
            x = model(pack['img'].to(device))
            total += F.multilabel_soft_margin_loss(x, pack['label'].to(device)).item()
            n += 1
    model.train()
    return total / max(n, 1)


def run(args):
    log = get_logger()
    device, source, train_ids = prepare(args, args.train_list, seed=True)
    dataset = ClassificationDataset(source, train_ids, resize_long=args.cam_resize_long,
                                    hor_flip=True, crop_size=args.cam_crop_size,
                                    crop_method='random')
    batch = per_rank_batch(args.cam_batch_size)
    steps_per_epoch = len(epoch_loader(dataset, batch, args, 0, True, True))
    if steps_per_epoch == 0:
        raise ValueError('%s has %d images, fewer than one batch of %d'
                         % (args.train_list, len(dataset), args.cam_batch_size))
    max_step = steps_per_epoch * args.cam_num_epoches

    model, optimizer, scheduler = build_training(args, source.n_classes, max_step, device)
    initialise_weights(model, args, dataset, device)
    weights_path = in_work_space(args.work_space, args.cam_weights_name)
    state_path = train_state_path(weights_path)
    record = provenance.stage_record(
        'train_cam', args, lists={'train_list': provenance.list_sha256(train_ids, source)},
        files={'imagenet_weights': args.imagenet_weights})
    provenance.claim_train_state(state_path, record, args.overwrite)
    start_epoch = load_train_state(state_path, model, optimizer, scheduler, device)
    if start_epoch:
        log.info('train_cam: resuming after epoch %d from %s', start_epoch, state_path)
    net = DistributedDataParallel(model) if dist.world_size() > 1 else model
    val_dataset = None
    if args.val_list and dist.is_main_process():
        val_dataset = ClassificationDataset(source, source.ids(args.val_list),
                                            crop_size=args.cam_crop_size, crop_method='top_left')
    log.info('train_cam: %d images, %d steps/epoch x %d epochs, batch %d (%d per process)',
             len(dataset), steps_per_epoch, args.cam_num_epoches, args.cam_batch_size, batch)
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp and device.type == 'cuda')
    net.train()
    for epoch in range(start_epoch, args.cam_num_epoches):
        loader = epoch_loader(dataset, batch, args, epoch, True, True)
        bar = tqdm(loader, desc='train_cam %d/%d' % (epoch + 1, args.cam_num_epoches),
                   disable=not dist.is_main_process(), dynamic_ncols=True)
        for pack in bar:
            _, loss = train_step(net, pack, optimizer, scheduler, scaler, device, args.amp)
            bar.set_postfix(loss='%.4f' % loss.item(), lr='%.2e' % scheduler.get_last_lr()[0])
        msg = 'train_cam epoch %d: last loss %.4f' % (epoch + 1, loss.item())
        if val_dataset is not None:
            msg += ', val loss %.4f' % validate(model, val_dataset, args, device)
        log.info(msg)
        checkpoint_epoch(state_path, model, optimizer, scheduler, epoch + 1)
    write_final_weights(model, weights_path, 'train_cam')
    provenance.write_weights_record(weights_path, record)
