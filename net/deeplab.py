"""Segmentation networks trained on the pseudo masks (docs/method.md#segmentation-network).

``deeplabv2``: the paper's protocol, DeepLab-v2's dilated ResNet-101 (output
stride 8; every block of res4 / res5 dilated 2 / 4, as in DeepLab-v2's
prototxt, where torchvision's ``replace_stride_with_dilation`` would leave
the first block of each at the previous rate) with frozen BatchNorm (statistics
and affine, Caffe's ``use_global_stats``) and ASPP: four 3x3 convolutions with
rates 6, 12, 18, 24 whose outputs are SUMMED. Its backbone takes torchvision's
``resnet101`` weights.

``deeplabv2_caffe``: the same network on the MSRA (Caffe) ResNet-101 that the
original DeepLab-v2 and its PyTorch ports use: the stride of a downsampling
block is in its first 1x1 convolution, the stem max-pool rounds up, and the
input is BGR in 0-255 minus the Caffe mean. It takes a converted DeepLab
initialisation (``deeplabv1_resnet101.pth`` / ``deeplabv2_resnet101_*.pth`` of
the deeplab-pytorch port, keys ``layer1.conv1.conv.weight``, ...). Our loaders
give ImageNet-normalised RGB; the network converts it to the Caffe input itself.

``deeplabv2_resnet50``: the same network on a ResNet-50 (torchvision's
``resnet50`` layout, e.g. the demo's pretrained backbone of
``tools/pretrain_backbone.py``): a lighter network for the CPU demo.

``deeplabv3``: torchvision's DeepLabV3-ResNet-101 as an option.

All return logits at the input size. With ``msc=True`` they run
deeplab-pytorch's multi-scale inputs (MSC, the training protocol of the
DeepLab code the authors point to): the image and its bilinear 0.5x and 0.75x
copies go through the network and the logits are fused by an element-wise max
at the full-scale logit size; in training the forward returns the four raw
logit maps (full, 0.5, 0.75, max) for :func:`segmentation_loss`.
"""
import functools
import re

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch import nn

from misc.imutils import IMAGENET_MEAN, IMAGENET_STD
from net.checkpoint import load_state_strictly, read_state_dict
from net.resnet50 import FixedBatchNorm

CAFFE_BGR_MEAN = (104.008, 116.669, 122.675)


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


class CaffeInput(nn.Module):
    """ImageNet-normalised RGB -> BGR in [0, 255] minus the Caffe mean."""

    def __init__(self):
        super().__init__()
        self.register_buffer('std', torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('mean', torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('bgr_mean', torch.tensor(CAFFE_BGR_MEAN).view(1, 3, 1, 1),
                             persistent=False)

    def forward(self, x):
        rgb = (x * self.std + self.mean) * 255.0
        return rgb.flip(1) - self.bgr_mean


def dilate_whole_layer(layer, rate):
    """Give every block's 3x3 convolution of ``layer`` the dilation ``rate``."""
    for block in layer:
        block.conv2.dilation = (rate, rate)
        block.conv2.padding = (rate, rate)


def move_stride_to_reduce(block):
    """MSRA bottleneck: the stride on the first 1x1 convolution, not on the 3x3."""
    block.conv1.stride, block.conv2.stride = block.conv2.stride, (1, 1)


def upsample(logits, size):
    return F.interpolate(logits, size, mode='bilinear', align_corners=False)


class SegmentationNet(nn.Module):
    """``logits(x)`` at the network's output stride; ``forward`` as in the module doc."""

    reference_alias_prefixes = ()      # no aliased names to drop when loading
    caffe = False
    msc_scales = (0.5, 0.75)

    def __init__(self, msc=False):
        super().__init__()
        self.msc = msc

    def multiscale_logits(self, x):
        """[full, 0.5x, 0.75x, max-fused] logits (deeplab-pytorch's MSC)."""
        full = self.logits(x)
        pyramid = [self.logits(F.interpolate(x, scale_factor=s, mode='bilinear',
                                             align_corners=False)) for s in self.msc_scales]
        fused = torch.stack([full] + [upsample(p, full.shape[2:]) for p in pyramid]).amax(0)
        return [full] + pyramid + [fused]

    def forward(self, x):
        if not self.msc:
            return upsample(self.logits(x), x.shape[2:])
        outputs = self.multiscale_logits(x)
        return outputs if self.training else upsample(outputs[-1], x.shape[2:])


def resize_labels(labels, size):
    """Label maps [N, H, W] resized to ``size`` with PIL's NEAREST, as deeplab-pytorch does
    (torch's 'nearest-exact' differs from PIL at some even sizes)."""
    resized = [np.asarray(Image.fromarray(label.astype(np.float32)).resize(
        (size[1], size[0]), resample=Image.NEAREST)) for label in labels.cpu().numpy()]
    return torch.from_numpy(np.stack(resized).astype(np.int64)).to(labels.device)


def segmentation_loss(outputs, labels, ignore_index=255):
    """Cross-entropy: on input-size logits, or summed over the MSC outputs against the
    labels resized to each with :func:`resize_labels`."""
    if torch.is_tensor(outputs):
        return F.cross_entropy(outputs.float(), labels, ignore_index=ignore_index)
    total = 0
    for logits in outputs:
        total = total + F.cross_entropy(logits.float(), resize_labels(labels, logits.shape[2:]),
                                        ignore_index=ignore_index)
    return total


class DeepLabV2(SegmentationNet):
    """Dilated ResNet-101 (OS 8, frozen BN) + ASPP sum; ``caffe``: the MSRA variant;
    ``depth`` 50: on a ResNet-50."""

    def __init__(self, n_classes, caffe=False, msc=False, depth=101):
        super().__init__(msc)
        self.caffe = caffe
        self.depth = depth
        self.input = CaffeInput() if caffe else nn.Identity()
        self.backbone = getattr(torchvision.models, 'resnet%d' % depth)(
            weights=None, norm_layer=FixedBatchNorm, replace_stride_with_dilation=[False, True, True])
        del self.backbone.avgpool
        del self.backbone.fc
        dilate_whole_layer(self.backbone.layer3, 2)
        dilate_whole_layer(self.backbone.layer4, 4)
        if caffe:
            self.backbone.maxpool.ceil_mode = True
            move_stride_to_reduce(self.backbone.layer2[0])
        for module in self.backbone.modules():
            if isinstance(module, FixedBatchNorm):
                module.requires_grad_(False)
        self.aspp = ASPPSum(2048, n_classes)

    def features(self, x):
        b = self.backbone
        x = b.maxpool(b.relu(b.bn1(b.conv1(self.input(x)))))
        return b.layer4(b.layer3(b.layer2(b.layer1(x))))

    def logits(self, x):
        return self.aspp(self.features(x))

    def optimizer_groups(self, lr, weight_decay):
        """DeepLab's solver: backbone convs lr (decayed), ASPP weights 10 lr (decayed),
        ASPP biases 20 lr (not decayed); BatchNorm is not trained."""
        convs = [p for p in self.backbone.parameters() if p.requires_grad]
        return [{'params': convs, 'lr': lr, 'weight_decay': weight_decay},
                {'params': [c.weight for c in self.aspp.branches], 'lr': 10 * lr,
                 'weight_decay': weight_decay},
                {'params': [c.bias for c in self.aspp.branches], 'lr': 20 * lr,
                 'weight_decay': 0.0}]


class DeepLabV3(SegmentationNet):
    """torchvision's DeepLabV3-ResNet-101."""

    def __init__(self, n_classes, msc=False):
        super().__init__(msc)
        self.net = torchvision.models.segmentation.deeplabv3_resnet101(
            weights=None, weights_backbone=None, num_classes=n_classes, aux_loss=False)

    @property
    def backbone(self):
        """The ResNet-101 (a view, not a second registration: no duplicate state-dict names)."""
        return self.net.backbone

    def logits(self, x):
        return self.net.classifier(self.net.backbone(x)['out'])

    def optimizer_groups(self, lr, weight_decay):
        """Backbone at lr, the DeepLabV3 head at 10 lr, all decayed."""
        return [{'params': list(self.net.backbone.parameters()), 'lr': lr,
                 'weight_decay': weight_decay},
                {'params': list(self.net.classifier.parameters()), 'lr': 10 * lr,
                 'weight_decay': weight_decay}]


ARCHITECTURES = {'deeplabv2': DeepLabV2,
                 'deeplabv2_caffe': functools.partial(DeepLabV2, caffe=True),
                 'deeplabv2_resnet50': functools.partial(DeepLabV2, depth=50),
                 'deeplabv3': DeepLabV3}

_DEEPLAB_PYTORCH_UNITS = {'reduce': '1', 'conv3x3': '2', 'increase': '3'}


def is_deeplab_pytorch_layout(state):
    return any(k.startswith('layer1.conv1.conv.') for k in state)


def strip_wrappers(state):
    """Drop DataParallel's ``module.`` and deeplab-pytorch MSC's ``base.`` prefixes."""
    out = {}
    for key, value in state.items():
        for prefix in ('module.', 'base.'):
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def torchvision_name(key):
    """deeplab-pytorch ResNet name -> torchvision name (None: not a backbone tensor).

    ``layer1.conv1.{conv,bn}`` is the stem; ``layer<L>.block<i>`` is torchvision's
    ``layer<L-1>.<i-1>`` with ``reduce/conv3x3/increase`` = ``conv1/2/3`` (``bn1/2/3``)
    and ``shortcut`` (``proj`` in older versions) = ``downsample.0/1``.
    """
    stem = re.fullmatch(r'layer1\.conv1\.(conv|bn)\.(\w+)', key)
    if stem:
        return ('conv1.' if stem.group(1) == 'conv' else 'bn1.') + stem.group(2)
    block = re.fullmatch(r'layer(\d)\.block(\d+)\.(\w+)\.(conv|bn)\.(\w+)', key)
    if not block:
        return None
    layer, index, unit, kind, tensor = block.groups()
    prefix = 'layer%d.%d.' % (int(layer) - 1, int(index) - 1)
    if unit in ('shortcut', 'proj'):
        return prefix + 'downsample.%s.%s' % ('0' if kind == 'conv' else '1', tensor)
    return prefix + '%s%s.%s' % (kind, _DEEPLAB_PYTORCH_UNITS[unit], tensor)


def from_deeplab_pytorch(state):
    """The backbone tensors of a converted DeepLab initialisation, torchvision names."""
    out = {}
    for key, value in state.items():
        name = torchvision_name(key)
        if name is not None:
            out[name] = value
    return out


def load_backbone_weights(model, path):
    """Load a torchvision ResNet-101 file (``deeplabv2``, ``deeplabv3``) or a converted
    DeepLab initialisation (``deeplabv2_caffe``) into ``model.backbone``; classifier
    and ASPP tensors of the file are ignored."""
    state = strip_wrappers(read_state_dict(path))
    caffe_file = is_deeplab_pytorch_layout(state)
    if caffe_file and not model.caffe:
        raise ValueError('%s is a converted Caffe DeepLab initialisation (MSRA ResNet-101); '
                         'train it with --seg_arch deeplabv2_caffe' % path)
    if model.caffe and not caffe_file:
        raise ValueError('--seg_arch deeplabv2_caffe needs a converted DeepLab initialisation '
                         '(deeplab-pytorch layout, layer1.conv1.conv.weight ...); %s is not one '
                         '(for torchvision\'s resnet101-*.pth use --seg_arch deeplabv2)' % path)
    if caffe_file:
        state = from_deeplab_pytorch(state)
    expected = model.backbone.state_dict()
    state = {k: v for k, v in state.items() if k in expected or not k.startswith('fc.')}
    for key in expected:
        if key.endswith('num_batches_tracked') and key not in state:
            state[key] = expected[key]
    load_state_strictly(model.backbone, state, '%s is not a ResNet-%d state dict'
                        % (path, getattr(model, 'depth', 101)))


def build_segmentation_model(arch, n_classes, backbone_weights=None, warn=None, msc=False):
    """The chosen network; its ResNet backbone from a local file if given."""
    model = ARCHITECTURES[arch](n_classes, msc=msc)
    if backbone_weights:
        load_backbone_weights(model, backbone_weights)
    elif warn is not None:
        warn('WARNING: no --seg_backbone_weights: the ResNet starts from random weights '
             '(fine for the demo and tests, not for the paper\'s numbers)')
    return model
