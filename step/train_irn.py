"""IRNet training (docs/method.md#irnet-training).

The frozen ResNet-50 of IRNet starts, as in the reference, from ImageNet
weights (``--imagenet_weights``), or from the backbone of a CAM-network
checkpoint (``--irn_backbone_weights``, e.g. res50_cam.pth); the edge and
displacement branches learn from the confident regions of
``cam_to_ir_label``. The authors' recipe: pairs within radius 10 on the
stride-4 grid of the ``--irn_crop_size`` crop, random rescale in
``--irn_rescale`` (0.5..1.5), flip, SGD with the reference's effective
settings (see :func:`misc.torchutils.reference_poly_sgd`), the edge branch at
the lr and the displacement branch at 10x. After training the mean
displacement over ``--infer_list`` is stored in ``mean_shift``. A resumable
state is saved after every epoch; DDP under torchrun.
"""
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from coco14 import protocol
from data.loaders import ClassificationDataset
from misc import dist
from misc.logutil import get_logger
from misc.torchutils import reference_poly_sgd
from net.checkpoint import load_backbone
from net.registry import cam_network
from net.resnet50_irn import IRNetLoss, irn_total_loss
from pipeline import provenance
from pipeline.paths import in_work_space, train_state_path
from pipeline.stage import prepare
from pipeline.training import (autocast_context, checkpoint_epoch, epoch_loader, load_train_state,
                           per_rank_batch, write_final_weights)
from wsss.path_index import AffinityDataset, PathIndex


def build_path_index(args):
    """Pairs within radius 10 on the stride-4 grid of the training crop."""
    return PathIndex(radius=10, default_size=(args.irn_crop_size // 4, args.irn_crop_size // 4))


def check_rescale(rescale):
    """``--irn_rescale`` is empty (no rescaling) or MIN,MAX with 0 < MIN <= MAX."""
    if rescale and (len(rescale) != 2 or not 0 < rescale[0] <= rescale[1]):
        raise ValueError('--irn_rescale %s: give MIN,MAX with 0 < MIN <= MAX (the reference: '
                         '0.5,1.5; IRNet\'s (0.5, 1.0, 1.5) draws in 0.5,1.0), or "" for no '
                         'rescaling' % ','.join('%g' % v for v in rescale))


def build_training(args, path_index, max_step, device):
    """(IRNetLoss model, optimizer, scheduler) of the recipe, the model in training mode.

    Random initial weights: :func:`initialise_backbone` (or a test) loads
    weights into the same tensors in place afterwards.
    """
    irnet = cam_network(args.cam_network).irnet()
    model = IRNetLoss(irnet, path_index).to(device)
    optimizer, scheduler = reference_poly_sgd(
        irnet.optimizer_groups(args.irn_learning_rate, args.irn_weight_decay),
        args.irn_weight_decay, max_step, fix_momentum_quirk=args.fix_momentum_quirk)
    return model.train(), optimizer, scheduler


def initialise_backbone(irnet, args):
    """The frozen backbone from a CAM checkpoint or ImageNet weights (random otherwise)."""
    if args.irn_backbone_weights:
        load_backbone(irnet.backbone, in_work_space(args.work_space, args.irn_backbone_weights),
                      irnet.backbone_name + '.')
    elif args.imagenet_weights:
        irnet.backbone.load_imagenet_weights(args.imagenet_weights)
    else:
        get_logger().warning('WARNING: no --imagenet_weights given: the frozen IRNet backbone '
                             'is random (fine for the demo and tests, not for the paper)')


def batch_losses(net, pack, device, amp=False):
    """(per-pair loss maps of :class:`IRNetLoss`, terms of :func:`irn_total_loss`) of a batch."""
    with autocast_context(device, amp):
        maps = [t.float() for t in net(pack['img'].to(device, non_blocking=True))]
    terms = irn_total_loss(maps, *(pack[k].to(device) for k in (
        'aff_bg_pos_label', 'aff_fg_pos_label', 'aff_neg_label')))
    return maps, terms


def train_step(net, pack, optimizer, scheduler, device, amp=False):
    """One SGD step on a batch; returns (loss maps, terms). The gradients stay in ``.grad``."""
    maps, terms = batch_losses(net, pack, device, amp)
    optimizer.zero_grad()
    terms['loss'].backward()
    optimizer.step()
    scheduler.step()
    return maps, terms


def estimate_mean_shift(irnet, source, args, device):
    """Mean displacement over the inference images (top-left crops), as the reference."""
    dataset = ClassificationDataset(source, source.ids(args.infer_list),
                                    crop_size=args.irn_crop_size, crop_method='top_left')
    batch = min(args.irn_batch_size, len(dataset))
    loader = DataLoader(dataset, batch_size=batch, shuffle=False, drop_last=True,
                        num_workers=args.num_workers)
    irnet.eval()
    means = []
    with torch.no_grad():
        for pack in loader:
            _, dp = irnet(pack['img'].to(device))
            means.append(dp.mean(dim=(0, 2, 3)).cpu())
    irnet.mean_shift.running_mean.copy_(torch.stack(means).mean(0))


def run(args):
    log = get_logger()
    device, source, listed = prepare(args, args.train_list, seed=True)
    reference = protocol.reference_protocol(args.dataset, args.coco_protocol)
    ids = protocol.cam_image_ids(listed, reference)  # the images with confident regions
    check_rescale(args.irn_rescale)
    path_index = build_path_index(args)
    dataset = AffinityDataset(source, ids, in_work_space(args.work_space, args.ir_label_out_dir),
                              args.irn_crop_size, path_index, rescale=args.irn_rescale)
    batch = per_rank_batch(args.irn_batch_size, '--irn_batch_size')
    steps_per_epoch = len(epoch_loader(dataset, batch, args, 0, True, True))
    if steps_per_epoch == 0:
        raise ValueError('%s has %d images, fewer than one batch of %d'
                         % (args.train_list, len(dataset), args.irn_batch_size))
    model, optimizer, scheduler = build_training(args, path_index,
                                                 steps_per_epoch * args.irn_num_epoches, device)
    irnet = model.irnet
    initialise_backbone(irnet, args)
    weights_path = in_work_space(args.work_space, args.irn_weights_name)
    state_path = train_state_path(weights_path)
    backbone = ({'irn_backbone_weights': in_work_space(args.work_space, args.irn_backbone_weights)}
                if args.irn_backbone_weights else {'imagenet_weights': args.imagenet_weights})
    record = provenance.stage_record(
        'train_irn', args, files=backbone,
        lists={'train_list': provenance.list_sha256(ids),
               'infer_list': provenance.list_sha256(source.ids(args.infer_list))},
        upstream={'ir_label': provenance.folder_record(in_work_space(args.work_space, args.ir_label_out_dir))})
    provenance.claim_train_state(state_path, record, args.overwrite)
    start_epoch = load_train_state(state_path, irnet, optimizer, scheduler, device)
    if start_epoch:
        log.info('train_irn: resuming after epoch %d from %s', start_epoch, state_path)
    net = DistributedDataParallel(model) if dist.world_size() > 1 else model
    log.info('train_irn: %d images, %d steps/epoch x %d epochs, batch %d (%d per process)',
             len(dataset), steps_per_epoch, args.irn_num_epoches, args.irn_batch_size, batch)
    net.train()
    for epoch in range(start_epoch, args.irn_num_epoches):
        bar = tqdm(epoch_loader(dataset, batch, args, epoch, True, True),
                   desc='train_irn %d/%d' % (epoch + 1, args.irn_num_epoches),
                   disable=not dist.is_main_process(), dynamic_ncols=True)
        for pack in bar:
            _, terms = train_step(net, pack, optimizer, scheduler, device, args.amp)
            bar.set_postfix({k: '%.4f' % v.item() for k, v in terms.items()})
        log.info('train_irn epoch %d: %s', epoch + 1,
                 ', '.join('%s %.4f' % (k, v.item()) for k, v in terms.items()))
        checkpoint_epoch(state_path, irnet, optimizer, scheduler, epoch + 1)
    if dist.is_main_process():
        estimate_mean_shift(irnet, source, args, device)
    write_final_weights(irnet, weights_path, 'train_irn')
    provenance.write_weights_record(weights_path, record)
