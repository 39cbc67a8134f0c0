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
``--seg_lr_decay_every`` iterations, DeepLab's solver groups (see ``net.deeplab``).
``--seg_grad_clip`` clips the gradient norm: off by default, useful from a
random initialisation. Trained by :class:`pipeline.engine.Training`. The weights
file records the architecture, MSC and the class names (JSON list, background
implicit), so ``tools/predict.py`` needs no dataset.
"""
import json

import torch
from torch.utils.data import DataLoader

from data.loaders import SegmentationTrainDataset
from misc.logutil import get_logger
from misc.torchutils import stepwise_poly_lr_lambda
from net.deeplab import build_segmentation_model, segmentation_loss
from net.resnet50 import estimate_batchnorm_statistics
from pipeline.engine import start
from pipeline.paths import in_work_space
from pipeline.training_records import train_seg_record


def label_dir(args):
    return None if args.seg_label_dir == 'gt' else in_work_space(args.work_space, args.seg_label_dir)


def build_model(args, source, dataset, device):
    """Network with backbone weights, or random with data-estimated BN statistics."""
    model = build_segmentation_model(args.seg_arch, source.n_classes + 1,
                                     args.seg_backbone_weights, warn=get_logger().warning,
                                     msc=args.seg_msc).to(device)
    if not args.seg_backbone_weights:
        loader = DataLoader(dataset, batch_size=min(len(dataset), 8), shuffle=False)
        estimate_batchnorm_statistics(model, (p['img'].to(device) for p in loader))
    return model


def optimizer_for(model, args):
    optimizer = torch.optim.SGD(model.optimizer_groups(args.seg_learning_rate,
                                                       args.seg_weight_decay),
                                lr=args.seg_learning_rate, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, stepwise_poly_lr_lambda(args.seg_num_iters, every=args.seg_lr_decay_every))
    return optimizer, scheduler


def batch_loss(forward, pack):
    """Cross-entropy of :func:`net.deeplab.segmentation_loss` (each MSC output summed)."""
    return {'loss': segmentation_loss(forward(pack['img']), pack['label'])}


def run(args):
    training, source, ids = start('train_seg', args, args.seg_train_list)
    device = training.device
    dataset = SegmentationTrainDataset(source, ids, label_dir(args), args.seg_crop_size,
                                       args.seg_scales)
    training.plan(dataset, args.seg_batch_size, '--seg_batch_size', args.seg_iter_size)
    model = build_model(args, source, dataset, device)
    optimizer, scheduler = optimizer_for(model, args)
    training.fit(model, optimizer, scheduler, batch_loss,
                 in_work_space(args.work_space, args.seg_weights_name),
                 train_seg_record(args, ids, label_dir(args)), args.seg_num_iters,
                 grad_clip=args.seg_grad_clip,
                 metadata={'arch': args.seg_arch, 'msc': str(args.seg_msc),
                           'n_classes': str(source.n_classes + 1),
                           'class_names': json.dumps(list(source.class_names))},
                 describe=', %s%s, labels %s' % (args.seg_arch, ' MSC' if args.seg_msc else '',
                                                 label_dir(args) or 'ground truth'))
