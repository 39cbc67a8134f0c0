"""CAM networks (docs/method.md#baseline-cam-network, docs/method.md#multi-scale-cams)
around a ``--cam_network`` backbone (:mod:`net.registry`; ResNet-50 by default, the
reference's).

``Net`` is the baseline classifier (frozen BatchNorm statistics); ``CAM``
computes its class activation maps. The QA-CLIMS network
(``net.resnet50_clims``) shares this layout with trainable BatchNorm.
Module names follow the reference checkpoints: the backbone under the
family's name (``resnet50.*``) and ``classifier.weight``.
"""
import torch.nn.functional as F
from torch import nn

from net.registry import RESNET50
from net.resnet50 import FixedBatchNorm


class CamClassifier(nn.Module):
    """A backbone (``network``'s, built with ``norm_layer``; its stem frozen) + bias-free
    1x1 classifier on its features."""

    norm_layer = nn.BatchNorm2d

    def __init__(self, n_classes, network=RESNET50):
        super().__init__()
        self.n_classes = n_classes
        self.backbone_name = network.name
        self.add_module(network.name, network.build_backbone(self.norm_layer))
        self.classifier = nn.Conv2d(self.backbone.feature_dim, n_classes, 1, bias=False)
        for p in self.backbone.stem_parameters():
            p.requires_grad = False

    @property
    def backbone(self):
        return self._modules[self.backbone_name]

    @property
    def stride(self):
        """Output stride of the maps."""
        return self.backbone.stride

    def features(self, x):
        return self.backbone(x)

    def trainable_parameters(self):
        """(backbone parameters, classifier parameters) that receive gradients."""
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        return backbone, list(self.classifier.parameters())

    def cam(self, x):
        """Raw maps relu(conv(features, W)) of a batch [N, 3, H, W]."""
        return F.relu(F.conv2d(self.features(x), self.classifier.weight))


class Net(CamClassifier):
    """Baseline CAM classifier: global average pooling, logits [N, n_classes].

    The authors' ``net/resnet50_cam.Net``: no stage output is detached and
    only the stem (conv1/bn1) is frozen, so layer1-4 (convolutions and the
    affine BatchNorm parameters) all train. ``detach_early_stages=True`` is
    IRNet's variant instead: the output of the backbone's early stages
    (layer2's) is detached, so they get no gradient and are marked frozen
    (``--cam_detach_early_stages``).
    """

    norm_layer = FixedBatchNorm

    def __init__(self, n_classes, detach_early_stages=False, network=RESNET50):
        super().__init__(n_classes, network)
        self.detach_early_stages = detach_early_stages
        if detach_early_stages:
            for module in self.backbone.early_modules():
                module.requires_grad_(False)

    def forward(self, x):
        x = self.backbone.forward_early(x)
        if self.detach_early_stages:
            x = x.detach()
        x = self.backbone.forward_late(x)
        x = x.mean(dim=(2, 3), keepdim=True)
        return self.classifier(x).view(-1, self.n_classes)

    def optimizer_groups(self, lr, weight_decay):
        """The reference's SGD groups: every backbone tensor at ``lr``, the classifier at 10 lr.

        The authors build the groups before ``train()`` freezes conv1/bn1, so
        group 0 holds ALL backbone tensors, the frozen ones included: they get
        no gradient and SGD leaves them unchanged.
        """
        return [{'params': list(self.backbone.parameters()), 'lr': lr,
                 'weight_decay': weight_decay},
                {'params': list(self.classifier.parameters()), 'lr': 10 * lr,
                 'weight_decay': weight_decay}]


def flip_fused_cam(model, pair):
    """CAM of [image, flipped image]: maps of the image + un-flipped maps of the flip."""
    x = model.cam(pair)
    return x[0] + x[1].flip(-1)


class InferenceCAM(nn.Module):
    """What make_cam and make_clims run: ``forward([img, flip(img)])`` of a ``CAM``
    network (baseline or QA-CLIMS, in eval mode) with its backbone's
    :meth:`~net.backbone.CamBackbone.inference_form` (ResNet-50: BatchNorm
    folded, channels-last, fused CPU kernels), the same maps within float32
    rounding. Its ``stride`` is the network's."""

    def __init__(self, cam_model):
        super().__init__()
        if cam_model.training:
            raise ValueError('InferenceCAM runs the network in eval mode: build it from a '
                             'model in eval mode (model.eval())')
        self.features = cam_model.backbone.inference_form()
        self.register_buffer('classifier_weight', cam_model.classifier.weight.detach())
        self.stride = cam_model.stride
        self.eval()

    def cam(self, x):
        """Raw maps relu(conv(features, W)) of a batch [N, 3, H, W]."""
        return F.relu(F.conv2d(self.features(x), self.classifier_weight))

    def forward(self, pair):
        return flip_fused_cam(self, pair).contiguous()


class CAM(Net):
    """Inference wrapper: forward([img, flip(img)]) -> [n_classes, h, w]."""

    def forward(self, pair):
        return flip_fused_cam(self, pair)
