"""Inference form of the ResNet-50 backbone (make_cam / make_clims,
docs/method.md#multi-scale-cams): the same features, faster.

:class:`FoldedResNet` is built from a torchvision-style ResNet of Bottleneck
blocks in eval mode (:meth:`net.resnet50.ResNet50.inference_form`). Every
convolution and the BatchNorm after it become one convolution with a bias
(BatchNorm with fixed statistics is an affine map per channel:
w' = w * g, b' = beta - mean * g with g = gamma / sqrt(var + eps)); weights
and activations are channels-last. On a CPU in float32 the ReLU and the
residual addition of each block also run inside the convolution (oneDNN
post-ops). Folding changes only the order of float32 roundings (about 1e-6
of the map maximum). Under bf16 autocast (``--amp``) on a CPU with native bf16
kernels (AVX512-BF16, AMX) the same fused kernels run in bf16 on weights
converted once (autocast would convert and reorder them at every call); in
float64, on a GPU or under other autocast the convolutions are ordinary
``F.conv2d`` calls.
"""
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from misc.torchutils import cpu_has_bf16_kernels


def onednn_fusion_available():
    """True when torch has oneDNN's fused convolution kernels (CPU builds with MKL-DNN)."""
    return (torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, '_convolution_pointwise'))


def uses_onednn_fusion(x):
    """Fused kernels for float32 CPU inputs outside autocast (autocast needs F.conv2d)."""
    return (x.device.type == 'cpu' and x.dtype == torch.float32
            and not torch.is_autocast_enabled('cpu') and torch.backends.mkldnn.enabled
            and onednn_fusion_available())


def uses_onednn_bf16_fusion(x):
    """Fused kernels in bf16 for CPU inputs under bf16 autocast, on CPUs with bf16 kernels."""
    return (x.device.type == 'cpu' and torch.is_autocast_enabled('cpu')
            and torch.get_autocast_dtype('cpu') == torch.bfloat16
            and torch.backends.mkldnn.enabled and onednn_fusion_available()
            and cpu_has_bf16_kernels())


class FoldedConv(nn.Module):
    """``conv`` followed by the eval-mode BatchNorm ``bn`` as one convolution."""

    def __init__(self, conv, bn):
        super().__init__()
        weight, bias = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean,
                                            bn.running_var, bn.eps, bn.weight, bn.bias)
        self.register_buffer('weight', weight.detach().contiguous(
            memory_format=torch.channels_last))
        self.register_buffer('bias', bias.detach().clone())
        self.register_buffer('weight_bf16', self.weight.to(torch.bfloat16), persistent=False)
        self.register_buffer('bias_bf16', self.bias.to(torch.bfloat16), persistent=False)
        self.padding, self.stride = list(conv.padding), list(conv.stride)
        self.dilation, self.groups = list(conv.dilation), conv.groups

    def fused(self, x, weight, bias, relu, residual):
        """oneDNN's convolution with the bias, the residual addition and the ReLU inside."""
        geometry = (self.padding, self.stride, self.dilation, self.groups)
        if residual is not None:
            return torch.ops.mkldnn._convolution_pointwise.binary(
                x, residual, weight, bias, *geometry, 'add', 1.0, 'relu' if relu else 'none',
                [], '')
        return torch.ops.mkldnn._convolution_pointwise(
            x, weight, bias, *geometry, 'relu' if relu else 'none', [], '')

    def forward(self, x, relu=False, residual=None):
        """conv(x) [+ residual] [then ReLU]."""
        if uses_onednn_fusion(x):
            return self.fused(x, self.weight, self.bias, relu, residual)
        if uses_onednn_bf16_fusion(x):
            bf16 = torch.bfloat16
            return self.fused(x.to(bf16), self.weight_bf16, self.bias_bf16, relu,
                              None if residual is None else residual.to(bf16))
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


class FoldedResNet(nn.Module):
    """forward(x) = the ResNet's features (stem, max-pool, layer1-4), channels-last."""

    def __init__(self, resnet):
        super().__init__()
        if resnet.training:
            raise ValueError('FoldedResNet folds BatchNorm with its running statistics: build '
                             'it from a model in eval mode (model.eval())')
        self.stem = FoldedConv(resnet.conv1, resnet.bn1)
        self.maxpool = resnet.maxpool
        self.blocks = nn.Sequential(*(FoldedBottleneck(block) for layer in (
            resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4) for block in layer))
        self.eval()

    def forward(self, x):
        x = self.stem(x.contiguous(memory_format=torch.channels_last), relu=True)
        return self.blocks(self.maxpool(x))
