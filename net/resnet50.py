"""ResNet-50 backbone of the CAM networks: torchvision's ResNet with the
reference strides (2, 2, 2, 1), i.e. output stride 16 with layer4 at stride
1 and no dilation (docs/method.md#baseline-cam-network)."""
import os

import torch
import torch.nn.functional as F
import torchvision
from torch import nn


class FixedBatchNorm(nn.BatchNorm2d):
    """BatchNorm that always normalises with its running statistics.

    The affine weight and bias stay trainable parameters (as in the
    reference ``FixedBatchNorm``); only the statistics are frozen.
    ``estimating`` is set only by :func:`estimate_batchnorm_statistics`.
    """

    estimating = False

    def forward(self, x):
        if self.estimating:
            return super().forward(x)
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=False, eps=self.eps)


def estimate_batchnorm_statistics(model, batches):
    """Set every FixedBatchNorm's running statistics from data.

    A randomly initialised backbone with frozen BatchNorm has no
    normalisation at all (running mean 0, variance 1) and diverges; without
    ImageNet weights (demo, tests) the statistics are first averaged over
    ``batches`` (cumulative average, batch statistics used downstream).
    """
    layers = [m for m in model.modules() if isinstance(m, FixedBatchNorm)]
    saved = [(m.momentum, m.training) for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum, m.estimating, m.training = None, True, True
    try:
        with torch.no_grad():
            for x in batches:
                model(x)
    finally:
        for m, (momentum, training) in zip(layers, saved):
            m.momentum, m.estimating, m.training = momentum, False, training


def resnet50(norm_layer=nn.BatchNorm2d, strides=(2, 2, 2, 1)):
    """torchvision ResNet-50 without its pooling/fc head.

    ``strides`` are those of conv1, layer2, layer3 and layer4 (the max-pool
    always has stride 2), as the reference ``resnet50(strides=...)``.
    """
    net = torchvision.models.resnet50(weights=None, norm_layer=norm_layer)
    net.conv1.stride = (strides[0], strides[0])
    for layer, stride in zip((net.layer2, net.layer3, net.layer4), strides[1:]):
        layer[0].conv2.stride = (stride, stride)
        layer[0].downsample[0].stride = (stride, stride)
    del net.avgpool
    del net.fc
    return net


def load_imagenet_weights(backbone, path):
    """Load torchvision ImageNet ResNet-50 weights (``resnet50-*.pth``) from a file.

    The classification head (``fc.*``) of the file is ignored; any other
    mismatch is an error naming the file.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError('ImageNet ResNet-50 weights %s do not exist (download '
                                'torchvision\'s resnet50-0676ba61.pth or resnet50-19c8e357.pth '
                                'and pass its path)' % path)
    state = torch.load(path, map_location='cpu', weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith('fc.')}
    result = backbone.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError('%s is not a torchvision ResNet-50 state dict: missing %s, unexpected %s'
                         % (path, result.missing_keys[:5], result.unexpected_keys[:5]))
