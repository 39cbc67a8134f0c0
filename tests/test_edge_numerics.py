"""Numerics at the edges, each through the project's own code path.

* CAM normalisation x / (max + 1e-5) per map (the authors' make_cam) for
  tiny peaks and an all-zero map;
* a CAM value exactly equal to the background threshold goes to background
  (argmax over [threshold, cams] picks channel 0 on ties) in eval_cam, in the
  threshold sweep and in make_sem_seg's background threshold;
* the confident-region rule of cam_to_ir_label (docs/method.md#confident-regions):
  conf = fg; conf[fg == 0] = 255; conf[bg + fg == 0] = 0.
"""
import json
import types

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import VOC_MINI, reference_ids
from misc.io import save_npz
from net.registry import RESNET50
import run_sample
import step.cam_to_ir_label
import step.make_sem_seg_labels
from voc12.devkit import VOC12
from wsss.cam import fuse_multiscale, normalize_cams, present_class_cams
from wsss.metrics import (ThresholdSweep, cam_to_label, confusion_matrix, iou_from_confusion,
                          mean_iou)

SWEEP = [i / 100 for i in range(5, 60)]       # the reference --eval_cam_best thresholds
SWEEP32 = np.array(SWEEP, np.float32)         # what the float32 CAMs are compared with


# ------------------------------------------------------------ CAM normalisation

def tiny_peak_maps():
    """float32 [4, 5, 7]: peaks 1e-6 and 1e-3, an all-zero map, an ordinary map (peak 3)."""
    base = np.random.default_rng(0).random((5, 7)).astype(np.float32)
    base /= base.max()
    return np.stack([base * np.float32(1e-6), base * np.float32(1e-3), np.zeros_like(base),
                     base * np.float32(3.0)])


def authors_normalisation(maps):
    """Each map / (its own max + 1e-5), in float32 as the authors' make_cam."""
    return maps / (maps.max(axis=(1, 2), keepdims=True) + np.float32(1e-5))


PEAKS_AFTER_NORMALISATION = [1e-6 / (1e-6 + 1e-5), 1e-3 / (1e-3 + 1e-5), 0.0, 3 / (3 + 1e-5)]


def test_normalisation_of_tiny_peaks_and_an_all_zero_map():
    maps = tiny_peak_maps()
    ours = normalize_cams(torch.from_numpy(maps)).numpy()
    np.testing.assert_array_equal(ours, authors_normalisation(maps))
    np.testing.assert_allclose(ours.max(axis=(1, 2)), PEAKS_AFTER_NORMALISATION, rtol=1e-6)
    assert not ours[2].any()


def test_present_class_cams_normalise_each_kept_map_exactly():
    """make_cam's selection + normalisation: the tagged classes' maps, taken before the
    fusion, equal those of fusing every class; each is divided by its own max + 1e-5."""
    maps = tiny_peak_maps()
    n_classes, kept = 6, [1, 2, 4, 5]
    label = torch.zeros(n_classes)
    label[kept] = 1
    outputs = torch.full((n_classes,) + maps.shape[1:], 50.0)   # absent classes: large
    outputs[kept] = torch.from_numpy(maps)
    size = (4 * maps.shape[1], 4 * maps.shape[2])                 # outputs at the stride-4 size
    keys, cam, hr = present_class_cams([outputs], size, label, RESNET50.stride)
    np.testing.assert_array_equal(keys, kept)
    np.testing.assert_array_equal(cam, authors_normalisation(maps))
    np.testing.assert_allclose(cam.max(axis=(1, 2)), PEAKS_AFTER_NORMALISATION, rtol=1e-6)
    _, high_res = fuse_multiscale([outputs], size, RESNET50.stride)
    assert hr.shape == (len(kept),) + size
    np.testing.assert_array_equal(hr, authors_normalisation(high_res[kept].numpy()))
    assert not hr[2].any()


# ------------------------------------------------------------ threshold ties

def sweep_pattern_cams(shape, n_keys):
    """float32 [n_keys, H, W]: pixel p of channel 0 is exactly SWEEP32[p % 55], others 0.

    Returns (cams, index) with index [H, W] = p % 55. At sweep threshold i the
    authors' argmax gives channel 0 iff index > i (index == i is a tie: background).
    """
    index = np.arange(shape[0] * shape[1]).reshape(shape) % len(SWEEP)
    cams = np.zeros((n_keys,) + tuple(shape), np.float32)
    cams[0] = SWEEP32[index]
    return cams, index


def expected_label(index, first_class_id, i):
    """Class ids at sweep threshold i: foreground only strictly above the threshold."""
    return np.where(index > i, first_class_id, 0)


def test_threshold_sweep_and_cam_to_label_send_ties_to_background():
    keys = np.array([6, 13])
    cams, index = sweep_pattern_cams((5, 22), len(keys))
    cams[1, ::2] = cams[0, ::2]                  # fg-fg ties: the first class wins
    gt = np.where(index % 2 == 0, keys[0] + 1, 0).astype(np.uint8)
    gt[0, :3] = 255
    sweep = ThresholdSweep(SWEEP, n_class=21)
    sweep.add(cams, keys, gt)
    for i, t in enumerate(SWEEP):
        label = expected_label(index, keys[0] + 1, i)
        np.testing.assert_array_equal(cam_to_label(cams, keys, t), label, err_msg='t=%g' % t)
        np.testing.assert_array_equal(sweep.confusions[i], confusion_matrix(label, gt, 21),
                                      err_msg='t=%g' % t)


def test_eval_cam_sends_ties_to_background(tmp_path):
    """eval_cam on CAM files whose values are exactly the sweep thresholds."""
    source = VOC12(str(VOC_MINI))
    ids = reference_ids('val')
    (tmp_path / 'cams').mkdir()
    expected = np.zeros((len(SWEEP), 21, 21), np.int64)
    for image_id in ids:
        gt = source.read_mask(image_id)
        keys = np.array(source.image_label_ids(image_id), np.int64)
        cams, index = sweep_pattern_cams(gt.shape, len(keys))
        save_npz(str(tmp_path / 'cams' / (image_id + '.npz')), keys=keys,
                 cam=cams[:, ::4, ::4], high_res=cams)
        for i in range(len(SWEEP)):
            expected[i] += confusion_matrix(expected_label(index, keys[0] + 1, i), gt, 21)
    run_sample.main(['--voc12_root', str(VOC_MINI), '--work_space', str(tmp_path),
                     '--num_workers', '0', '--device', 'cpu', '--eval_cam_pass', 'True',
                     '--chainer_eval_set', 'val', '--cam_eval_thres', '0.15',
                     '--eval_cam_best', 'True'])
    ours = json.loads((tmp_path / 'eval_cam.json').read_text())
    main = SWEEP.index(0.15)
    np.testing.assert_array_equal(ours['confusion'], expected[main])
    assert ours['miou'] == pytest.approx(mean_iou(iou_from_confusion(expected[main])), rel=1e-12)
    np.testing.assert_allclose([m for _, m in ours['sweep']],
                               [mean_iou(iou_from_confusion(c)) for c in expected], rtol=1e-12)


def test_sem_seg_background_threshold_tie_goes_to_background(monkeypatch):
    """make_sem_seg: a walked map equal to --sem_seg_bg_thres after / global max is background.

    The random walk is replaced by chosen maps at stride 4 (2 classes, 4 x 8):
    class A = 1 on columns 0-3 and 0 on 4-7 (the global max is 1), class B = 0.25
    everywhere. The x4 bilinear upsampling (weights multiples of 1/8) keeps these
    values exact: B is exactly 0.25 everywhere, A is 1, 0.625, 0.375 on columns
    <= 16 and 0.125, 0 from column 17 on. With a background threshold of 0.25,
    columns <= 16 are A and the rest is a background/B tie: background.
    """
    walked = torch.zeros(2, 1, 4, 8)
    walked[0, 0, :, :4] = 1.0
    walked[1] = 0.25
    cams = torch.ones(2, 4, 8)
    edge = torch.full((1, 4, 8), 0.5)
    calls = []

    def fake_walk(cams_in, edge_in, beta, exp_times, radius):
        calls.append((cams_in, edge_in, beta, exp_times, radius))
        return walked.clone()

    monkeypatch.setattr(step.make_sem_seg_labels, 'propagate_to_edge', fake_walk)
    args = types.SimpleNamespace(beta=10.0, exp_times=8, sem_seg_bg_thres=0.25)
    keys = np.array([4, 9])
    size = (13, 30)
    scores = step.make_sem_seg_labels.random_walk_scores(cams, edge, size, args.beta,
                                                         args.exp_times, args.sem_seg_bg_thres)
    assert torch.equal(scores[2], torch.full(size, 0.25))      # the tie really is exact
    label = step.make_sem_seg_labels.pseudo_label(cams, keys, edge, size, args)
    expected = np.zeros(size, np.uint8)
    expected[:, :17] = keys[0] + 1
    np.testing.assert_array_equal(label, expected)
    assert all(c[0] is cams and c[1] is edge and c[2:] == (10.0, 8, 5) for c in calls)


# ------------------------------------------------------------ confident regions

FG_THRES, BG_THRES = 0.30, 0.05
F32_FG, F32_BG = np.float32(FG_THRES), np.float32(BG_THRES)
IR_KEYS = np.array([2, 11])                   # lookup [0, 3, 12]
# Eight pixel kinds, tiled over the image: CAM values of the two classes, the
# argmax the CRF must receive at the fg and at the bg threshold (background
# wins ties, then the first class), what the (fake) CRF returns for each, and
# the label of the rule (fg class if fg > 0; else 255 if bg > 0; else 0).
PIXEL_KINDS = [
    # cam values                        fg in  bg in  fg out  bg out  label
    ((F32_FG, 0.0),                     0,     1,     0,      0,      0),    # tie at fg thres
    ((F32_BG, F32_BG),                  0,     0,     0,      1,      255),  # tie at bg thres
    ((0.5, 0.7),                        2,     2,     0,      2,      255),
    ((0.0, 0.0),                        0,     0,     1,      0,      3),    # fg class, bg 0
    ((0.2, 0.1),                        0,     1,     2,      1,      12),   # fg, bg disagree
    ((F32_FG, F32_FG),                  0,     1,     1,      1,      3),
    ((0.9, 0.9),                        1,     1,     2,      2,      12),   # fg-fg tie
    ((0.04, np.nextafter(F32_FG, 1)),   2,     2,     0,      0,      0),
]


def tile_kinds(shape, column):
    """[H, W] array whose pixel p holds PIXEL_KINDS[p % 8][column] ([2, H, W] for the CAMs)."""
    kind = np.arange(shape[0] * shape[1]).reshape(shape) % len(PIXEL_KINDS)
    tiled = np.array([k[column] for k in PIXEL_KINDS])[kind]
    return tiled.transpose(2, 0, 1).astype(np.float32) if column == 0 else tiled


def test_confident_region_rule_pixel_by_pixel(tmp_path, monkeypatch):
    """cam_to_ir_label with a CRF replaced by chosen label maps that differ between fg and bg."""
    source = VOC12(str(VOC_MINI))
    image_id = reference_ids('train')[0]
    img = source.read_image(image_id)
    shape = img.shape[:2]
    cams = tile_kinds(shape, 0)
    (tmp_path / 'cams').mkdir()
    save_npz(str(tmp_path / 'cams' / (image_id + '.npz')), keys=IR_KEYS,
             cam=cams[:, ::4, ::4], high_res=cams)
    (tmp_path / 'one.txt').write_text(image_id + '\n')
    crf_for = {'fg': (tile_kinds(shape, 1), tile_kinds(shape, 3)),
               'bg': (tile_kinds(shape, 2), tile_kinds(shape, 4))}
    seen = []

    def fake_crf(crf_img, labels, n_labels, *args, **kwargs):
        assert n_labels == len(IR_KEYS) + 1
        np.testing.assert_array_equal(crf_img, img)
        for which, (argmax_in, out) in crf_for.items():
            if np.array_equal(labels, argmax_in):
                seen.append(which)
                return out
        raise AssertionError('the CRF got an argmax map of neither threshold (ties?)')

    monkeypatch.setattr(step.cam_to_ir_label, 'crf_inference_label', fake_crf)
    run_sample.main(['--voc12_root', str(VOC_MINI), '--work_space', str(tmp_path),
                     '--num_workers', '1', '--device', 'cpu', '--cam_to_ir_label_pass', 'True',
                     '--train_list', str(tmp_path / 'one.txt'),
                     '--conf_fg_thres', str(FG_THRES), '--conf_bg_thres', str(BG_THRES)])
    assert sorted(seen) == ['bg', 'fg']
    with Image.open(tmp_path / 'ir_label' / (image_id + '.png')) as png:
        assert png.mode == 'L'
        ours = np.asarray(png)
    np.testing.assert_array_equal(ours, tile_kinds(shape, 5))
