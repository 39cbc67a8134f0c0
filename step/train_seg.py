"""Segmentation network on the pseudo masks (docs/method.md#segmentation-network; not in the
reference repository).

DeepLabV2 (ResNet-101, ASPP 6/12/18/24 summed; ``deeplabv2_caffe`` for a
converted DeepLab initialisation) or torchvision's DeepLabV3, trained on
``--seg_train_list`` (train_aug) with the masks of ``--seg_label_dir`` (the
pseudo masks of make_sem_seg; ``gt`` for the ground truth), following the
deeplab-pytorch / CLIMS DeepLab protocol: random scale, flip, crop, MSC
multi-scale inputs with the cross-entropy (255 ignored) summed over the four
outputs (``--seg_msc``), ``--seg_iter_size`` accumulated micro-batches per
iteration, SGD momentum 0.9, poly 0.9 over ``--seg_num_iters`` recomputed every
``--seg_lr_decay_every`` iterations, DeepLab's solver groups (backbone lr, ASPP
weights 10 lr, ASPP biases 20 lr without weight decay; see ``net.deeplab``).
``--seg_grad_clip`` clips the gradient norm: off by default, useful from a
random initialisation.
Resumable after every pass over the data; DDP under torchrun (SyncBatchNorm on
GPUs for DeepLabV3; DeepLabV2's BatchNorm is frozen); AMP with ``--amp``;
TensorBoard when installed. The weights file records the architecture, MSC
and the class names (JSON list, background implicit), so ``tools/predict.py``
needs no dataset.
"""
import contextlib
import json

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from data.loaders import SegmentationTrainDataset
from misc import dist
from misc.logutil import get_logger
from misc.torchutils import stepwise_poly_lr_lambda
from net.deeplab import build_segmentation_model, segmentation_loss
from net.resnet50 import FixedBatchNorm, estimate_batchnorm_statistics
from pipeline import provenance
from pipeline.paths import in_work_space, train_state_path
from pipeline.stage import prepare
from pipeline.training import autocast_context, checkpoint_epoch, epoch_loader, load_train_state, \
    per_rank_batch, tensorboard_writer, write_final_weights


def label_dir(args):
    return None if args.seg_label_dir == 'gt' else in_work_space(args.work_space, args.seg_label_dir)


def training_record(args, ids):
    """Provenance of the training: list, pseudo masks (their record; none for the ground
    truth), backbone weights, recipe flags."""
    labels = label_dir(args)
    return provenance.stage_record(
        'train_seg', args, lists={'seg_train_list': provenance.list_sha256(ids)},
        files={'seg_backbone_weights': args.seg_backbone_weights},
        upstream={'seg_label_dir': labels and provenance.folder_record(labels)})


def build_model(args, source, dataset, device):
    """Network with backbone weights, or random with data-estimated BN statistics."""
    log = get_logger()
    model = build_segmentation_model(args.seg_arch, source.n_classes + 1,
                                     args.seg_backbone_weights, warn=log.warning,
                                     msc=args.seg_msc).to(device)
    if not args.seg_backbone_weights:
        loader = DataLoader(dataset, batch_size=min(len(dataset), 8), shuffle=False)
        estimate_batchnorm_statistics(model, (p['img'].to(device) for p in loader))
    if dist.world_size() > 1 and uses_batch_statistics(model):
        if device.type == 'cuda':
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            log.warning('WARNING: DDP on CPU: BatchNorm statistics are per process '
                        '(SyncBatchNorm needs CUDA)')
    return model


def uses_batch_statistics(model):
    """True when some BatchNorm normalises with batch statistics in training
    (DeepLabV3); DeepLabV2's BatchNorm is frozen and must not become SyncBatchNorm."""
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
               and not isinstance(m, FixedBatchNorm) for m in model.modules())


def optimizer_for(model, args):
    optimizer = torch.optim.SGD(model.optimizer_groups(args.seg_learning_rate,
                                                       args.seg_weight_decay),
                                lr=args.seg_learning_rate, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, stepwise_poly_lr_lambda(args.seg_num_iters, every=args.seg_lr_decay_every))
    return optimizer, scheduler


def full_groups(iterable, size):
    """Consecutive lists of ``size`` items; an incomplete last group is dropped."""
    group = []
    for item in iterable:
        group.append(item)
        if len(group) == size:
            yield group
            group = []


def train_iteration(net, model, micro_batches, optimizer, scaler, args, device):
    """One SGD step on ``--seg_iter_size`` accumulated micro-batches (each loss divided
    by their number, as deeplab-pytorch's ITER_SIZE); returns the summed loss."""
    optimizer.zero_grad()
    total = 0.0
    for i, pack in enumerate(micro_batches):
        last = i == len(micro_batches) - 1
        sync = contextlib.nullcontext() if last or net is model else net.no_sync()
        with sync:
            with autocast_context(device, args.amp):
                outputs = net(pack['img'].to(device, non_blocking=True))
            loss = segmentation_loss(outputs, pack['label'].to(device)) / len(micro_batches)
            scaler.scale(loss).backward()
        total += loss.item()
    if args.seg_grad_clip > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.seg_grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return total


def run(args):
    log = get_logger()
    device, source, ids = prepare(args, args.seg_train_list, seed=True)
    dataset = SegmentationTrainDataset(source, ids, label_dir(args), args.seg_crop_size,
                                       args.seg_scales)
    batch = per_rank_batch(args.seg_batch_size, '--seg_batch_size')
    if len(dataset) // dist.world_size() // batch < args.seg_iter_size:
        raise ValueError('%s has %d images, fewer than one iteration needs (--seg_batch_size %d '
                         'x --seg_iter_size %d)' % (args.seg_train_list, len(dataset),
                                                    args.seg_batch_size, args.seg_iter_size))
    model = build_model(args, source, dataset, device)
    optimizer, scheduler = optimizer_for(model, args)
    weights_path = in_work_space(args.work_space, args.seg_weights_name)
    state_path = train_state_path(weights_path)
    record = training_record(args, ids)
    provenance.claim_train_state(state_path, record, args.overwrite)
    epoch = load_train_state(state_path, model, optimizer, scheduler, device)
    if epoch:
        log.info('train_seg: resuming at iteration %d from %s', scheduler.last_epoch, state_path)
    net = DistributedDataParallel(model) if dist.world_size() > 1 else model
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp and device.type == 'cuda')
    writer = tensorboard_writer(args)
    log.info('train_seg: %s%s, %d images, %d iterations, batch %d (%d per process) x %d '
             'accumulated, labels %s', args.seg_arch, ' MSC' if args.seg_msc else '',
             len(dataset), args.seg_num_iters, args.seg_batch_size, batch, args.seg_iter_size,
             label_dir(args) or 'ground truth')
    net.train()
    bar = tqdm(total=args.seg_num_iters, initial=scheduler.last_epoch, desc='train_seg',
               disable=not dist.is_main_process(), dynamic_ncols=True)
    while scheduler.last_epoch < args.seg_num_iters:
        loader = epoch_loader(dataset, batch, args, epoch, True, True)
        for micro_batches in full_groups(loader, args.seg_iter_size):
            if scheduler.last_epoch >= args.seg_num_iters:
                break
            loss = train_iteration(net, model, micro_batches, optimizer, scaler, args, device)
            scheduler.step()
            bar.update()
            bar.set_postfix(loss='%.4f' % loss)
            if writer is not None:
                writer.add_scalar('train_seg/loss', loss, scheduler.last_epoch)
        epoch += 1
        log.info('train_seg: pass %d, iteration %d, loss %.4f', epoch, scheduler.last_epoch, loss)
        checkpoint_epoch(state_path, model, optimizer, scheduler, epoch)
    bar.close()
    write_final_weights(model, weights_path, 'train_seg',
                        {'arch': args.seg_arch, 'msc': str(args.seg_msc),
                         'n_classes': str(source.n_classes + 1),
                         'class_names': json.dumps(list(source.class_names))})
    provenance.write_weights_record(weights_path, record)
