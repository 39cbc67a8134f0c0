"""Baseline CAM network training (docs/method.md#baseline-cam-network).

The authors' recipe: ``net.resnet50_cam.Net`` on the ``--cam_network``
backbone (ResNet-50; only conv1/bn1 frozen, no stage detached;
``--cam_detach_early_stages True`` for IRNet's variant), multilabel
soft-margin loss on globally pooled logits, SGD with the reference's
effective settings (:func:`misc.torchutils.reference_poly_sgd`) over all
backbone tensors at the lr and the classifier at 10x, trained by
:class:`pipeline.engine.Training` (``--cam_batch_size`` is the global batch).
"""
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from data.loaders import ClassificationDataset
from misc.logutil import get_logger
from misc.torchutils import reference_poly_sgd
from net.registry import cam_network
from net.resnet50 import estimate_batchnorm_statistics
from pipeline.engine import seed_augmentation, start
from pipeline.paths import in_work_space
from pipeline.training_records import train_cam_record


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
    """ImageNet backbone weights, or (random backbone) BN statistics estimated on the data
    with the augmentation of epoch 0."""
    if args.imagenet_weights:
        model.backbone.load_imagenet_weights(args.imagenet_weights)
        return
    get_logger().warning('WARNING: no --imagenet_weights given: the backbone starts from a '
                         'random initialisation with BatchNorm statistics estimated on the '
                         'training images (fine for the demo and tests, not for reproducing '
                         'the paper)')
    seed_augmentation(args.seed, 0)
    loader = DataLoader(dataset, batch_size=min(len(dataset), 16), shuffle=False)
    estimate_batchnorm_statistics(model, (pack['img'].to(device) for pack in loader))


def batch_loss(forward, pack):
    """Multilabel soft-margin loss of the batch's logits [N, n_classes]."""
    return {'loss': F.multilabel_soft_margin_loss(forward(pack['img']).float(), pack['label'])}


def validation_loss(model, dataset, args, device):
    """Mean multilabel soft-margin loss on the validation images."""
    loader = DataLoader(dataset, batch_size=args.cam_batch_size, shuffle=False,
                        num_workers=args.num_workers)
    model.eval()
    with torch.no_grad():
        losses = [F.multilabel_soft_margin_loss(model(pack['img'].to(device)),
                                                pack['label'].to(device)).item()
                  for pack in loader]
    model.train()
    return sum(losses) / max(len(losses), 1)


def run(args):
    training, source, ids = start('train_cam', args, args.train_list)
    device = training.device
    dataset = ClassificationDataset(source, ids, resize_long=args.cam_resize_long, hor_flip=True,
                                    crop_size=args.cam_crop_size, crop_method='random')
    max_step = args.cam_num_epoches * training.plan(dataset, args.cam_batch_size,
                                                    '--cam_batch_size')
    model, optimizer, scheduler = build_training(args, source.n_classes, max_step, device)
    initialise_weights(model, args, dataset, device)
    val = args.val_list and ClassificationDataset(source, source.ids(args.val_list),
                                                  crop_size=args.cam_crop_size,
                                                  crop_method='top_left')
    training.fit(model, optimizer, scheduler, batch_loss, in_work_space(args.work_space, args.cam_weights_name),
                 train_cam_record(args, source, ids), max_step,
                 summary=val and (lambda: ', val loss %.4f'
                                  % validation_loss(model, val, args, device)))
