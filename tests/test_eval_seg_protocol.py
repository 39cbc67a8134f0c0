"""eval_seg's inference protocol against an explicit computation.

A tiny network that is not left-right symmetric (its logits depend on the
image content through a random 3x3 convolution and on the column) takes the
place of the segmentation network through eval_seg's own loading path (the
architecture table and a weights file that records the architecture). For
each setting of scales, flip and CRF, the PNGs and the scores eval_seg
writes must equal what the test computes itself, step by step, following
``step/eval_seg.py``'s protocol: for each scale, PIL bicubic rescale of the
uint8 image to (round(H s), round(W s)), ImageNet normalisation, the network
on the image and (flip) on its mirror, the mirrored logits flipped back and
averaged with the others, bilinear resize to the image size
(align_corners=False), softmax; the probabilities AVERAGED over the scales;
argmax, or the dense CRF on the averaged probabilities then argmax.
"""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from conftest import VOC_MINI
from misc.imutils import IMAGENET_MEAN, IMAGENET_STD
from misc.io import read_label_png
from net.checkpoint import save_weights
from net.deeplab import ARCHITECTURES
import run_sample
from voc12.devkit import VOC12
from wsss.crf import crf_inference_prob

EVAL_SET = 'val'
SETTINGS = [((1.0,), False, False), ((0.5, 1.0, 1.5), True, True),
            ((0.75, 1.25), True, False), ((0.5, 0.75), False, True)]


class ColumnAwareNet(nn.Module):
    """Logits = 3x3 convolution of the image + a per-class slope times the column
    position in [0, 1]: neither the content term nor the position term is mirror
    symmetric. Output at the input size, as the segmentation networks."""

    def __init__(self, n_classes, msc=False):
        super().__init__()
        self.conv = nn.Conv2d(3, n_classes, 3, padding=1)
        self.slope = nn.Parameter(torch.zeros(n_classes))

    def forward(self, x):
        column = torch.linspace(0, 1, x.shape[-1], dtype=x.dtype, device=x.device)
        return self.conv(x) + self.slope.view(1, -1, 1, 1) * column


def probe_network(n_classes):
    torch.manual_seed(0)
    net = ColumnAwareNet(n_classes)
    with torch.no_grad():
        net.conv.weight.normal_(std=0.15)
        net.conv.bias.normal_(std=0.5)
        net.slope.normal_(std=2.0)
    return net.eval()


def normalised(img):
    """uint8 HxWx3 -> float32 [1, 3, H, W], ImageNet mean/std (computed in float64)."""
    x = (img / 255.0 - np.asarray(IMAGENET_MEAN)) / np.asarray(IMAGENET_STD)
    return torch.from_numpy(np.ascontiguousarray(x.astype(np.float32).transpose(2, 0, 1)))[None]


def scale_probabilities(net, img, scale, flip):
    """Softmax probabilities [C, H, W] of one scale, back at the image size."""
    h, w = img.shape[:2]
    scaled = np.asarray(Image.fromarray(img).resize(
        (int(np.round(w * scale)), int(np.round(h * scale))), Image.BICUBIC))
    x = normalised(scaled)
    logits = net(torch.cat([x, x.flip(-1)]) if flip else x)
    if flip:
        logits = (logits[0:1] + logits[1:2].flip(-1)) / 2
    logits = F.interpolate(logits, (h, w), mode='bilinear', align_corners=False)
    return F.softmax(logits, dim=1)[0]


def averaged_probabilities(net, img, scales, flip):
    with torch.no_grad():
        total = 0
        for scale in scales:
            total = total + scale_probabilities(net, img, scale, flip)
    return (total / len(scales)).numpy()


def confusion(pred, gt, n_class):
    valid = gt != 255
    return np.bincount(gt[valid].astype(np.int64) * n_class + pred[valid],
                       minlength=n_class * n_class).reshape(n_class, n_class)


def mean_iou(conf):
    diag = np.diag(conf).astype(np.float64)
    with np.errstate(invalid='ignore', divide='ignore'):
        iou = diag / (conf.sum(0) + conf.sum(1) - diag)
    return np.nanmean(iou)


def run_eval_seg(work_space, net, monkeypatch, scales, flip, crf):
    monkeypatch.setitem(ARCHITECTURES, 'deeplabv2', ColumnAwareNet)
    save_weights(net, str(work_space / 'seg.safetensors'), {'arch': 'deeplabv2'})
    run_sample.main(['--voc12_root', str(VOC_MINI), '--work_space', str(work_space),
                     '--device', 'cpu', '--num_workers', '0', '--seg_arch', 'deeplabv2',
                     '--seg_weights_name', 'seg.safetensors', '--seg_eval_set', EVAL_SET,
                     '--seg_eval_scales', ','.join(str(s) for s in scales),
                     '--seg_eval_flip', str(flip), '--seg_crf', str(crf),
                     '--eval_seg_pass', 'True'])
    return json.loads((work_space / 'eval_seg.json').read_text())


@pytest.mark.parametrize('scales,flip,crf', SETTINGS,
                         ids=['%s-flip%s-crf%s' % ('_'.join(map(str, s)), f, c)
                              for s, f, c in SETTINGS])
def test_predictions_and_scores_follow_the_protocol(tmp_path, monkeypatch, scales, flip, crf):
    source = VOC12(str(VOC_MINI))
    n_class = source.n_classes + 1
    net = probe_network(n_class)
    result = run_eval_seg(tmp_path, net, monkeypatch, scales, flip, crf)
    variants = {'plain': tmp_path / 'seg_pred'}
    if crf:
        variants['crf'] = tmp_path / 'seg_pred_crf'
    confusions = {v: np.zeros((n_class, n_class), np.int64) for v in variants}
    sum_changes_crf = False
    for image_id in source.ids(EVAL_SET):
        img = source.read_image(image_id)
        probs = averaged_probabilities(net, img, scales, flip)
        expected = {'plain': probs.argmax(0)}
        if crf:
            expected['crf'] = crf_inference_prob(img, probs).argmax(0)
            summed = crf_inference_prob(img, probs * len(scales)).argmax(0)
            sum_changes_crf |= not np.array_equal(summed, expected['crf'])
        gt = source.read_mask(image_id)
        for variant, folder in variants.items():
            np.testing.assert_array_equal(read_label_png(str(folder / (image_id + '.png'))),
                                          expected[variant])
            confusions[variant] += confusion(expected[variant], gt, n_class)
    for variant in variants:
        assert result[variant]['confusion'] == confusions[variant].tolist()
        assert result[variant]['miou'] == pytest.approx(mean_iou(confusions[variant]), rel=1e-12)
    assert result['miou'] == result['crf' if crf else 'plain']['miou']
    if crf and len(scales) > 1:
        assert sum_changes_crf          # the CRF clips probabilities: the average matters


def test_the_probe_network_is_not_mirror_symmetric():
    """Dropping the un-flip or the flip pass must change the predictions of the probe."""
    source = VOC12(str(VOC_MINI))
    net = probe_network(source.n_classes + 1)
    img = source.read_image(source.ids(EVAL_SET)[0])
    with torch.no_grad():
        x = normalised(img)
        direct = net(x).argmax(1)
        mirrored_back = net(x.flip(-1)).flip(-1).argmax(1)
        fused = (net(x) + net(x.flip(-1)).flip(-1)).argmax(1)
    assert (direct != mirrored_back).float().mean() > 0.1
    assert (fused != direct).float().mean() > 0.05
