"""Segmentation networks trained on the pseudo masks (METHOD.md stage 10).

``DeepLabV2``: the paper's protocol, a dilated ResNet-101 (output stride 8,
frozen BatchNorm statistics) with ASPP: four 3x3 convolutions with rates
6, 12, 18, 24 whose outputs are SUMMED. ``deeplabv3``: torchvision's
DeepLabV3-ResNet-101 head as an option. Both return logits at the input size.
"""
import os

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from net.resnet50 import FixedBatchNorm


class ASPPSum(nn.Module):
    """DeepLabV2's atrous spatial pyramid: parallel dilated 3x3 convs, summed."""

    def __init__(self, in_ch, n_classes, rates=(6, 12, 18, 24)):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(in_ch, n_classes, 3, padding=r, dilation=r, bias=True) for r in rates)
        for conv in self.branches:
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, x):
        return sum(branch(x) for branch in self.branches)


class DeepLabV2(nn.Module):
    """ResNet-101 (layer3/4 dilated 2/4, OS 8, frozen BN statistics) + ASPP sum."""

    reference_alias_prefixes = ()      # no aliased names to drop when loading

    def __init__(self, n_classes=21):
        super().__init__()
        self.backbone = torchvision.models.resnet101(
            weights=None, norm_layer=FixedBatchNorm, replace_stride_with_dilation=[False, True, True])
        del self.backbone.avgpool
        del self.backbone.fc
        self.aspp = ASPPSum(2048, n_classes)

    def features(self, x):
        b = self.backbone
        x = b.maxpool(b.relu(b.bn1(b.conv1(x))))
        return b.layer4(b.layer3(b.layer2(b.layer1(x))))

    def forward(self, x):
        logits = self.aspp(self.features(x))
        return F.interpolate(logits, x.shape[2:], mode='bilinear', align_corners=False)

    def parameter_groups(self):
        """(backbone parameters, head parameters): the head trains at 10x lr."""
        return list(self.backbone.parameters()), list(self.aspp.parameters())


class DeepLabV3(nn.Module):
    """torchvision's DeepLabV3-ResNet-101, logits at the input size."""

    reference_alias_prefixes = ()

    def __init__(self, n_classes=21):
        super().__init__()
        self.net = torchvision.models.segmentation.deeplabv3_resnet101(
            weights=None, weights_backbone=None, num_classes=n_classes, aux_loss=False)
        self.backbone = self.net.backbone

    def forward(self, x):
        return self.net(x)['out']

    def parameter_groups(self):
        return list(self.net.backbone.parameters()), list(self.net.classifier.parameters())


ARCHITECTURES = {'deeplabv2': DeepLabV2, 'deeplabv3': DeepLabV3}


def build_segmentation_model(arch, n_classes, backbone_weights=None, warn=None):
    """The chosen network; the ResNet-101 backbone from a local torchvision file if given."""
    model = ARCHITECTURES[arch](n_classes)
    if backbone_weights:
        if not os.path.isfile(backbone_weights):
            raise FileNotFoundError('backbone weights %s do not exist (torchvision\'s '
                                    'resnet101-*.pth or a converted DeepLab initialisation)'
                                    % backbone_weights)
        state = torch.load(backbone_weights, map_location='cpu', weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith('fc.')}
        result = model.backbone.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if not k.startswith('fc.')]
        if missing or result.unexpected_keys:
            raise ValueError('%s is not a ResNet-101 state dict: missing %s, unexpected %s'
                             % (backbone_weights, missing[:4], result.unexpected_keys[:4]))
    elif warn is not None:
        warn('WARNING: no --seg_backbone_weights: the ResNet-101 starts from random weights '
             '(fine for the demo and tests, not for the paper\'s numbers)')
    return model
