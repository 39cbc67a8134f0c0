"""CAM networks on a ResNet-50 (docs/method.md#baseline-cam-network,
docs/method.md#multi-scale-cams).

``Net`` is the baseline classifier (frozen BatchNorm statistics); ``CAM``
computes its class activation maps. The QA-CLIMS network
(``net.resnet50_clims``) shares this layout with trainable BatchNorm.
Module names follow the reference checkpoints: ``resnet50.*`` and
``classifier.weight``.
"""
import torch.nn.functional as F
from torch import nn

from net.resnet50 import FixedBatchNorm, resnet50


class ResNet50Classifier(nn.Module):
    """ResNet-50 (output stride 16) + bias-free 1x1 classifier."""

    norm_layer = nn.BatchNorm2d

    def __init__(self, n_classes=20):
        super().__init__()
        self.n_classes = n_classes
        self.resnet50 = resnet50(norm_layer=self.norm_layer)
        self.classifier = nn.Conv2d(2048, n_classes, 1, bias=False)
        for p in list(self.resnet50.conv1.parameters()) + list(self.resnet50.bn1.parameters()):
            p.requires_grad = False

    def stage1(self, x):
        r = self.resnet50
        return r.layer1(r.maxpool(r.relu(r.bn1(r.conv1(x)))))

    def features(self, x):
        r = self.resnet50
        return r.layer4(r.layer3(r.layer2(self.stage1(x))))

    def trainable_parameters(self):
        """(backbone parameters, classifier parameters) that receive gradients."""
        backbone = [p for p in self.resnet50.parameters() if p.requires_grad]
        return backbone, list(self.classifier.parameters())

    def cam(self, x):
        """Raw maps relu(conv(features, W)) of a batch [N, 3, H, W]."""
        return F.relu(F.conv2d(self.features(x), self.classifier.weight))


class Net(ResNet50Classifier):
    """Baseline CAM classifier: global average pooling, logits [N, n_classes].

    The authors' ``net/resnet50_cam.Net``: no stage output is detached and
    only conv1/bn1 are frozen, so layer1-4 (convolutions and the affine
    BatchNorm parameters) all train. ``detach_early_stages=True`` is IRNet's
    variant instead: the layer2 output is detached, so layer1-2 get no
    gradient and are marked frozen (``--cam_detach_early_stages``).
    """

    norm_layer = FixedBatchNorm

    def __init__(self, n_classes=20, detach_early_stages=False):
        super().__init__(n_classes)
        self.detach_early_stages = detach_early_stages
        if detach_early_stages:
            self.resnet50.layer1.requires_grad_(False)
            self.resnet50.layer2.requires_grad_(False)

    def forward(self, x):
        r = self.resnet50
        x = r.layer2(self.stage1(x))
        if self.detach_early_stages:
            x = x.detach()
        x = r.layer4(r.layer3(x))
        x = x.mean(dim=(2, 3), keepdim=True)
        return self.classifier(x).view(-1, self.n_classes)

    def optimizer_groups(self, lr, weight_decay):
        """The reference's SGD groups: every backbone tensor at ``lr``, the classifier at 10 lr.

        The authors build the groups before ``train()`` freezes conv1/bn1, so
        group 0 holds ALL backbone tensors, the frozen ones included: they get
        no gradient and SGD leaves them unchanged.
        """
        return [{'params': list(self.resnet50.parameters()), 'lr': lr,
                 'weight_decay': weight_decay},
                {'params': list(self.classifier.parameters()), 'lr': 10 * lr,
                 'weight_decay': weight_decay}]


def flip_fused_cam(model, pair):
    """CAM of [image, flipped image]: maps of the image + un-flipped maps of the flip."""
    x = model.cam(pair)
    return x[0] + x[1].flip(-1)


class CAM(Net):
    """Inference wrapper: forward([img, flip(img)]) -> [n_classes, h, w]."""

    def forward(self, pair):
        return flip_fused_cam(self, pair)
