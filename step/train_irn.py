"""IRNet training (docs/method.md#irnet-training).

The frozen backbone starts from ImageNet weights (``--imagenet_weights``) or
from a CAM-network checkpoint (``--irn_backbone_weights``); the edge and
displacement branches learn from the confident regions of ``cam_to_ir_label``:
pairs within radius 10 on the stride-4 grid of the ``--irn_crop_size`` crop,
random rescale in ``--irn_rescale``, flip, the reference's SGD
(:func:`misc.torchutils.reference_poly_sgd`; displacement branch at 10x the
lr), trained by :class:`pipeline.engine.Training`; then ``mean_shift`` is set to
the mean displacement over ``--infer_list``.
"""
from torch.utils.data import DataLoader

from coco14 import protocol
from data.loaders import ClassificationDataset
from misc.imutils import check_rescale_range
from misc.logutil import get_logger
from misc.torchutils import reference_poly_sgd
from net.checkpoint import load_backbone
from net.registry import cam_network
from net.resnet50_irn import IRNetLoss, estimate_mean_shift, irn_total_loss
from pipeline.engine import start
from pipeline.paths import in_work_space
from pipeline.training_records import train_irn_record
from wsss.path_index import AffinityDataset, PathIndex


def build_path_index(args):
    """Pairs within radius 10 on the stride-4 grid of the training crop."""
    return PathIndex(radius=10, default_size=(args.irn_crop_size // 4, args.irn_crop_size // 4))


def build_training(args, path_index, max_step, device):
    """(IRNetLoss model, optimizer, scheduler) of the recipe, the model in training mode,
    the backbone random: :func:`initialise_backbone` (or a test) loads it in place."""
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


def batch_loss(forward, pack):
    """The terms of :func:`net.resnet50_irn.irn_total_loss` on the batch's pair losses."""
    maps = [t.float() for t in forward(pack['img'])]
    return irn_total_loss(maps, pack['aff_bg_pos_label'], pack['aff_fg_pos_label'],
                          pack['aff_neg_label'])


def mean_shift_images(source, args, device):
    """The image batches of the mean displacement: top-left crops of ``--infer_list``."""
    dataset = ClassificationDataset(source, source.ids(args.infer_list),
                                    crop_size=args.irn_crop_size, crop_method='top_left')
    loader = DataLoader(dataset, batch_size=min(args.irn_batch_size, len(dataset)),
                        shuffle=False, drop_last=True, num_workers=args.num_workers)
    return (pack['img'].to(device) for pack in loader)


def run(args):
    training, source, listed = start('train_irn', args, args.train_list)
    device = training.device
    reference = protocol.reference_protocol(args.dataset, args.coco_protocol)
    ids = protocol.cam_image_ids(listed, reference)  # the images with confident regions
    check_rescale_range(args.irn_rescale, '--irn_rescale')
    path_index = build_path_index(args)
    dataset = AffinityDataset(source, ids, in_work_space(args.work_space, args.ir_label_out_dir),
                              args.irn_crop_size, path_index, rescale=args.irn_rescale)
    max_step = args.irn_num_epoches * training.plan(dataset, args.irn_batch_size,
                                                    '--irn_batch_size')
    model, optimizer, scheduler = build_training(args, path_index, max_step, device)
    initialise_backbone(model.irnet, args)
    training.fit(model, optimizer, scheduler, batch_loss,
                 in_work_space(args.work_space, args.irn_weights_name), train_irn_record(args, source, ids),
                 max_step, saved=model.irnet,
                 before_saving=lambda irnet: estimate_mean_shift(
                     irnet, mean_shift_images(source, args, device)))
