"""IRNet (docs/method.md#irnet-training, docs/method.md#random-walk): a frozen
backbone (FixedBatchNorm; the ``--cam_network``'s, by default the reference's
ResNet-50 with strides 2, 2, 2, 1) with a class-boundary (edge) branch and a
displacement branch.

Module names follow the reference checkpoint ``res50_irn.pth``
(``resnet50.*``, ``fc_edge1..6``, ``fc_dp1..7``, ``mean_shift``).
"""
import torch
from torch import nn

from net.registry import RESNET50
from net.resnet50 import FixedBatchNorm

STAGE_STRIDES = (4, 4, 8, 16, 16)      # of the backbone's five stage outputs IRNet reads


def branch(in_ch, out_ch, groups, upsample=1, activate=True):
    """1x1 conv, GroupNorm, optional bilinear upsampling, ReLU (the reference's order)."""
    layers = [nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.GroupNorm(groups, out_ch)]
    if upsample > 1:
        layers.append(nn.Upsample(scale_factor=upsample, mode='bilinear', align_corners=False))
    if activate:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class MeanShift(nn.Module):
    """Subtracts the mean displacement estimated after training (eval mode only)."""

    def __init__(self, num_features):
        super().__init__()
        self.register_buffer('running_mean', torch.zeros(num_features))

    def forward(self, x):
        if self.training:
            return x
        return x - self.running_mean.view(1, -1, 1, 1)


class IRNet(nn.Module):
    """forward(x) -> (edge logits [N, 1, h, w], displacement [N, 2, h, w]) at stride 4.

    The branches read the backbone's five ``stage_outputs`` (strides
    :data:`STAGE_STRIDES`, channels ``stage_channels``).
    """

    # Names under which the reference checkpoint repeats modules or stores
    # buffers derived from the training crop size (dropped when loading).
    reference_alias_prefixes = ('stage1.', 'stage2.', 'stage3.', 'stage4.', 'stage5.',
                                'backbone.', 'edge_layers.', 'dp_layers.', 'fc_dp7.4.',
                                'path_indices', 'disp_target')

    def __init__(self, network=RESNET50):
        super().__init__()
        backbone_class = network.backbone()
        if backbone_class.stage_channels is None or backbone_class.stride != STAGE_STRIDES[-1]:
            raise ValueError('--cam_network %s has no IRNet: its backbone %s gives no five stage '
                             'outputs at strides %s (stage_channels)'
                             % (network.name, backbone_class.__name__, STAGE_STRIDES))
        self.backbone_name = network.name
        self.add_module(network.name, network.build_backbone(FixedBatchNorm))
        c = backbone_class.stage_channels
        self.mean_shift = MeanShift(2)
        self.fc_edge1 = branch(c[0], 32, 4)
        self.fc_edge2 = branch(c[1], 32, 4)
        self.fc_edge3 = branch(c[2], 32, 4, upsample=2)
        self.fc_edge4 = branch(c[3], 32, 4, upsample=4)
        self.fc_edge5 = branch(c[4], 32, 4, upsample=4)
        self.fc_edge6 = nn.Conv2d(160, 1, 1, bias=True)
        self.fc_dp1 = branch(c[0], 64, 8)
        self.fc_dp2 = branch(c[1], 128, 16)
        self.fc_dp3 = branch(c[2], 256, 16)
        self.fc_dp4 = branch(c[3], 256, 16, upsample=2)
        self.fc_dp5 = branch(c[4], 256, 16, upsample=2)
        self.fc_dp6 = branch(768, 256, 16, upsample=2)
        self.fc_dp7 = nn.Sequential(nn.Conv2d(448, 256, 1, bias=False), nn.GroupNorm(16, 256),
                                    nn.ReLU(inplace=True), nn.Conv2d(256, 2, 1, bias=False))
        for p in self.backbone.parameters():
            p.requires_grad = False

    @property
    def backbone(self):
        return self._modules[self.backbone_name]

    def backbone_features(self, x):
        """Detached stage outputs of the frozen backbone (stem, layer1-4 on ResNet-50)."""
        return tuple(y.detach() for y in self.backbone.stage_outputs(x))

    def forward(self, x):
        x1, x2, x3, x4, x5 = self.backbone_features(x)
        h, w = x2.shape[2:]
        edge = torch.cat([self.fc_edge1(x1), self.fc_edge2(x2), self.fc_edge3(x3)[..., :h, :w],
                          self.fc_edge4(x4)[..., :h, :w], self.fc_edge5(x5)[..., :h, :w]], 1)
        dp3 = self.fc_dp3(x3)                         # stride 8: layer3/4 upsampled 2x to it
        h3, w3 = dp3.shape[2:]
        dp_up = torch.cat([dp3, self.fc_dp4(x4)[..., :h3, :w3], self.fc_dp5(x5)[..., :h3, :w3]], 1)
        dp = torch.cat([self.fc_dp1(x1), self.fc_dp2(x2), self.fc_dp6(dp_up)[..., :h, :w]], 1)
        return self.fc_edge6(edge), self.mean_shift(self.fc_dp7(dp))

    def train(self, mode=True):
        """The backbone always stays in eval mode (frozen)."""
        super().train(mode)
        self.backbone.eval()
        return self

    def optimizer_groups(self, lr, weight_decay):
        """The reference's SGD groups: the edge branch at ``lr``, the displacement
        branch at 10 lr (IRNet's recipe), both with ``weight_decay``.

        The frozen backbone is in no group. (The reference leaves
        ``requires_grad`` on for it and relies on the detached stage outputs;
        here it is off, as DDP needs every such parameter to get a gradient.)
        """
        edge = [p for n, p in self.named_parameters() if n.startswith('fc_edge')]
        dp = [p for n, p in self.named_parameters() if n.startswith('fc_dp')]
        return [{'params': edge, 'lr': lr, 'weight_decay': weight_decay},
                {'params': dp, 'lr': 10 * lr, 'weight_decay': weight_decay}]


def edge_map(model, pair, stride=4):
    """Boundary probability of an image from [image, flipped image] (docs/method.md#random-walk).

    The network runs on the unpadded pair (as the reference run that made the
    fixtures), the outputs are cropped to ceil(H/4) x ceil(W/4), and the
    result is sigmoid(edge[0] / 2 + flip(edge[1]) / 2) of shape [1, h, w].
    """
    h, w = (pair.shape[2] - 1) // stride + 1, (pair.shape[3] - 1) // stride + 1
    edge, _ = model(pair)
    edge = edge[..., :h, :w]
    return torch.sigmoid(edge[0] / 2 + edge[1].flip(-1) / 2)


class IRNetLoss(nn.Module):
    """Per-pair loss maps of IRNet training (docs/method.md#irnet-training, reference
    ``AffinityDisplacementLoss``) on the ``path_index`` of the crop grid.

    forward(x) -> (pos_aff_loss, neg_aff_loss [N, n_dirs, n_src],
    dp_fg_loss, dp_bg_loss [N, 2, n_dirs, n_src]).
    """

    def __init__(self, irnet, path_index):
        super().__init__()
        self.irnet = irnet
        self.path_index = path_index
        for i, indices in enumerate(path_index.path_indices):
            self.register_buffer('path_indices%d' % i, torch.from_numpy(indices), persistent=False)
        target = torch.from_numpy(path_index.search_dst).t().float()[None, :, :, None]
        self.register_buffer('disp_target', target, persistent=False)

    def to_affinity(self, edge):
        """1 - max boundary probability on each pair's path: [N, n_dirs, n_src]."""
        flat = edge.reshape(edge.shape[0], -1)
        groups = []
        for i in range(len(self.path_index.path_indices)):
            ind = getattr(self, 'path_indices%d' % i)
            dist = flat[:, ind.reshape(-1)].reshape(flat.shape[0], *ind.shape)
            groups.append(1 - dist.max(dim=2).values)
        return torch.cat(groups, dim=1)

    def to_pair_displacement(self, disp):
        """Displacement of each source minus that of each destination: [N, 2, n_dirs, n_src]."""
        r = self.path_index.radius_floor
        h, w = disp.shape[2] - r, disp.shape[3] - 2 * r
        src = disp[:, :, :h, r:r + w]
        dst = torch.stack([disp[:, :, dy:dy + h, r + dx:r + dx + w]
                           for dy, dx in self.path_index.search_dst], 2)
        pair = src.unsqueeze(2) - dst
        return pair.reshape(pair.shape[0], pair.shape[1], pair.shape[2], -1)

    def forward(self, x):
        edge, dp = self.irnet(x)
        aff = self.to_affinity(torch.sigmoid(edge))
        pair = self.to_pair_displacement(dp)
        return (-torch.log(aff + 1e-5), -torch.log(1. + 1e-5 - aff),
                torch.abs(pair - self.disp_target), torch.abs(pair))


def irn_total_loss(losses, bg_pos, fg_pos, neg):
    """``(pos + neg) / 2 + (dp_fg + dp_bg) / 2`` with the reference's label-weighted means.

    Returns the terms ``bg_pos``, ``fg_pos``, ``pos`` (their mean), ``neg``,
    ``dp_fg``, ``dp_bg`` and the total ``loss``.
    """
    pos_aff, neg_aff, dp_fg, dp_bg = losses
    bg_pos_loss = (bg_pos * pos_aff).sum() / (bg_pos.sum() + 1e-5)
    fg_pos_loss = (fg_pos * pos_aff).sum() / (fg_pos.sum() + 1e-5)
    neg_loss = (neg * neg_aff).sum() / (neg.sum() + 1e-5)
    dp_fg_loss = (dp_fg * fg_pos.unsqueeze(1)).sum() / (2 * fg_pos.sum() + 1e-5)
    dp_bg_loss = (dp_bg * bg_pos.unsqueeze(1)).sum() / (2 * bg_pos.sum() + 1e-5)
    terms = {'bg_pos': bg_pos_loss, 'fg_pos': fg_pos_loss,
             'pos': bg_pos_loss / 2 + fg_pos_loss / 2, 'neg': neg_loss,
             'dp_fg': dp_fg_loss, 'dp_bg': dp_bg_loss}
    terms['loss'] = (terms['pos'] + neg_loss) / 2 + (dp_fg_loss + dp_bg_loss) / 2
    return terms


def estimate_mean_shift(irnet, images):
    """Set ``mean_shift`` to the mean displacement over the batches ``images`` (on the
    network's device), with the network in eval mode as in the reference."""
    irnet.eval()
    means = []
    with torch.no_grad():
        for img in images:
            _, dp = irnet(img)
            means.append(dp.mean(dim=(0, 2, 3)).cpu())
    irnet.mean_shift.running_mean.copy_(torch.stack(means).mean(0))
