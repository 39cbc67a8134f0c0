"""ResNet-50 backbone of the CAM networks: torchvision's ResNet with the
reference strides (2, 2, 2, 1), i.e. output stride 16 with layer4 at stride
1 and no dilation (docs/method.md#baseline-cam-network)."""
import os

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.resnet import Bottleneck

from net.backbone import CamBackbone
from net.checkpoint import load_state_strictly

STRIDES = (2, 2, 2, 1)          # conv1, layer2, layer3, layer4 (the reference's resnet50 strides)


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


class ResNet50(CamBackbone, torchvision.models.ResNet):
    """torchvision's ResNet-50 without its pooling/fc head, with the reference's
    :data:`STRIDES` (the max-pool always has stride 2): output stride 16, layer4
    at stride 1 without dilation. The ``--cam_network resnet50`` backbone
    (:class:`net.backbone.CamBackbone`)."""

    feature_dim = 2048
    stride = 16
    stage_channels = (64, 256, 512, 1024, 2048)

    def __init__(self, norm_layer=nn.BatchNorm2d):
        super().__init__(Bottleneck, [3, 4, 6, 3], norm_layer=norm_layer)
        self.conv1.stride = (STRIDES[0], STRIDES[0])
        for layer, stride in zip((self.layer2, self.layer3, self.layer4), STRIDES[1:]):
            layer[0].conv2.stride = (stride, stride)
            layer[0].downsample[0].stride = (stride, stride)
        del self.avgpool
        del self.fc

    def stem(self, x):
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward_early(self, x):
        return self.layer2(self.layer1(self.stem(x)))

    def forward_late(self, x):
        return self.layer4(self.layer3(x))

    def stem_parameters(self):
        return list(self.conv1.parameters()) + list(self.bn1.parameters())

    def early_modules(self):
        return [self.layer1, self.layer2]

    def stage_outputs(self, x):
        """Outputs of the stem (stride 4) and of layer1-4."""
        outputs = [self.stem(x)]
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            outputs.append(layer(outputs[-1]))
        return outputs

    def inference_form(self):
        """BatchNorm folded into the convolutions, channels-last, fused oneDNN kernels on CPU
        (:class:`net.folded_resnet.FoldedResNet`); the model must be in eval mode."""
        from net.folded_resnet import FoldedResNet
        return FoldedResNet(self)

    def load_imagenet_weights(self, path):
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
        load_state_strictly(self, state, '%s is not a torchvision ResNet-50 state dict' % path)
