"""Inference form of the CAM networks (make_cam / make_clims, docs/method.md#multi-scale-cams):
the same maps, faster.

:class:`FoldedCAM` is built from a ``net.resnet50_cam.CAM`` or
``net.resnet50_clims.CAM`` in eval mode. Every convolution and the BatchNorm
after it become one convolution with a bias (BatchNorm with fixed statistics
is an affine map per channel: w' = w * g, b' = beta - mean * g with
g = gamma / sqrt(var + eps)); weights and activations are channels-last. On
a CPU in float32 the ReLU and the residual addition of each bottleneck also
run inside the convolution (oneDNN post-ops). Folding changes only the order
of float32 roundings (about 1e-6 of the map maximum); under autocast (``--amp``)
or on a GPU the convolutions are ordinary ``F.conv2d`` calls.
"""
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from net.resnet50_cam import flip_fused_cam


def onednn_fusion_available():
    """True when torch has oneDNN's fused convolution kernels (CPU builds with MKL-DNN)."""
    return (torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, '_convolution_pointwise'))


def uses_onednn_fusion(x):
    """Fused kernels for float32 CPU inputs outside autocast (autocast needs F.conv2d)."""
    return (x.device.type == 'cpu' and x.dtype == torch.float32
            and not torch.is_autocast_enabled('cpu') and torch.backends.mkldnn.enabled
            and onednn_fusion_available())


class FoldedConv(nn.Module):
    """``conv`` followed by the eval-mode BatchNorm ``bn`` (or nothing) as one convolution."""

    def __init__(self, conv, bn=None):
        super().__init__()
        weight, bias = conv.weight.detach(), conv.bias
        if bn is not None:
            weight, bias = fuse_conv_bn_weights(weight, bias, bn.running_mean, bn.running_var,
                                                bn.eps, bn.weight, bn.bias)
        self.register_buffer('weight', weight.detach().contiguous(
            memory_format=torch.channels_last))
        self.register_buffer('bias', None if bias is None else bias.detach().clone())
        self.padding, self.stride = list(conv.padding), list(conv.stride)
        self.dilation, self.groups = list(conv.dilation), conv.groups

    def forward(self, x, relu=False, residual=None):
        """conv(x) [+ residual] [then ReLU]."""
        geometry = (self.padding, self.stride, self.dilation, self.groups)
        if uses_onednn_fusion(x):
            if residual is not None:
                return torch.ops.mkldnn._convolution_pointwise.binary(
                    x, residual, self.weight, self.bias, *geometry, 'add', 1.0,
                    'relu' if relu else 'none', [], '')
            return torch.ops.mkldnn._convolution_pointwise(
                x, self.weight, self.bias, *geometry, 'relu' if relu else 'none', [], '')
        y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                     self.groups)
        if residual is not None:
            y = y + residual
        return F.relu(y) if relu else y


class FoldedBottleneck(nn.Module):
    """torchvision's Bottleneck: relu(conv3(relu(conv2(relu(conv1(x))))) + shortcut(x))."""

    def __init__(self, block):
        super().__init__()
        self.conv1 = FoldedConv(block.conv1, block.bn1)
        self.conv2 = FoldedConv(block.conv2, block.bn2)
        self.conv3 = FoldedConv(block.conv3, block.bn3)
        self.downsample = None if block.downsample is None else FoldedConv(*block.downsample)

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.conv2(self.conv1(x, relu=True), relu=True)
        return self.conv3(out, relu=True, residual=shortcut)


class FoldedCAM(nn.Module):
    """forward([image, flipped image]) -> [n_classes, h, w], as ``CAM.forward``.

    The raw maps relu(conv(features, classifier weight)) of the pair; the
    flip's maps flipped back and added (``net.resnet50_cam.flip_fused_cam``).
    """

    def __init__(self, cam_model):
        super().__init__()
        if cam_model.training:
            raise ValueError('FoldedCAM folds BatchNorm with its running statistics: build it '
                             'from a model in eval mode (model.eval())')
        r = cam_model.resnet50
        self.stem = FoldedConv(r.conv1, r.bn1)
        self.maxpool = r.maxpool
        self.blocks = nn.Sequential(*(FoldedBottleneck(block) for layer in
                                      (r.layer1, r.layer2, r.layer3, r.layer4) for block in layer))
        self.classifier = FoldedConv(cam_model.classifier)
        self.eval()

    def cam(self, x):
        """Raw maps relu(conv(features, W)) of a batch [N, 3, H, W] (channels-last)."""
        x = self.maxpool(self.stem(x.contiguous(memory_format=torch.channels_last), relu=True))
        return self.classifier(self.blocks(x), relu=True)

    def forward(self, pair):
        return flip_fused_cam(self, pair).contiguous()
