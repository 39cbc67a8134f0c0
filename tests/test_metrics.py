"""Tests of wsss/metrics.py against the reference fixtures (eval_cam, eval_sem_seg)."""
import json
import warnings

import numpy as np
import pytest
from PIL import Image

from conftest import REF, VOC_MINI as VOC
from step.eval_cam import SWEEP_THRESHOLDS
from wsss.metrics import (ThresholdSweep, among_predfg_bg, cam_to_label, confusion_matrix,
                          fp_fn_rates, iou_from_confusion, mean_iou, original_early_stop_best)

EVAL_CAM_REF = json.loads((REF / "eval_cam.json").read_text())
EVAL_SEM_SEG_REF = json.loads((REF / "eval_sem_seg.json").read_text())
SPLITS = tuple(sorted(EVAL_CAM_REF))
RTOL = 1e-9


def _ids(split):
    return (VOC / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split()


def _gt(name):
    return np.asarray(Image.open(VOC / "SegmentationClass" / f"{name}.png"))


def _cam(name):
    with np.load(REF / "cams" / f"{name}.npz") as f:
        return f["high_res"], f["keys"]


def _nan_list(values):
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _assert_close(actual, expected):
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=0, equal_nan=True)


def _assert_confusion(actual, expected):
    """Fixture matrix may be smaller (chainercv grows it): top-left equal, rest zero."""
    expected = np.asarray(expected, dtype=np.int64)
    n = expected.shape[0]
    np.testing.assert_array_equal(actual[:n, :n], expected)
    rest = actual.copy()
    rest[:n, :n] = 0
    assert not rest.any()


def _assert_iou(actual, expected):
    expected = _nan_list(expected)
    _assert_close(actual[:expected.size], expected)
    assert np.isnan(actual[expected.size:]).all()


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def sweeps():
    out = {}
    for split in SPLITS:
        sweep = ThresholdSweep(SWEEP_THRESHOLDS, n_class=21)
        for name in _ids(split):
            high_res, keys = _cam(name)
            sweep.add(high_res, keys, _gt(name))
        out[split] = sweep
    return out


@pytest.mark.parametrize("split", SPLITS)
def test_eval_cam_at_default_threshold(split):
    ref = EVAL_CAM_REF[split]
    conf = sum(confusion_matrix(cam_to_label(*_cam(n), ref["cam_eval_thres"]), _gt(n), 21)
               for n in _ids(split))
    _assert_confusion(conf, ref["confusion"])
    iou = iou_from_confusion(conf)
    _assert_iou(iou, ref["iou"])
    _assert_close(mean_iou(iou), ref["miou"])
    _assert_close(among_predfg_bg(conf), ref["among_predfg_bg"])


@pytest.mark.parametrize("split", SPLITS)
def test_eval_cam_sweep(split, sweeps):
    ref = EVAL_CAM_REF[split]
    sweep = sweeps[split]
    assert sweep.n_images == ref["n_images"]
    ref_t, ref_miou = np.array(ref["sweep_thres_miou"]).T
    np.testing.assert_array_equal(sweep.thresholds, ref_t)
    mious = sweep.mious()
    _assert_close(mious, ref_miou)

    main = sweep.result(int(np.flatnonzero(sweep.thresholds == ref["cam_eval_thres"])[0]))
    _assert_confusion(main["confusion"], ref["confusion"])
    _assert_close(main["miou"], ref["miou"])

    best_t, best_miou = original_early_stop_best(mious, sweep.thresholds)
    assert best_t == ref["original_early_stop_best"]["thres"]
    _assert_close(best_miou, ref["original_early_stop_best"]["miou"])


@pytest.mark.parametrize("split", SPLITS)
def test_sweep_matches_per_threshold_on_fixture(split, sweeps):
    confs = sweeps[split].confusions
    for i, t in enumerate(SWEEP_THRESHOLDS):
        expected = sum(confusion_matrix(cam_to_label(*_cam(n), t), _gt(n), 21) for n in _ids(split))
        np.testing.assert_array_equal(confs[i], expected)


@pytest.mark.parametrize("split", sorted(EVAL_SEM_SEG_REF))
def test_eval_sem_seg(split):
    ref = EVAL_SEM_SEG_REF[split]
    conf = sum(confusion_matrix(np.asarray(Image.open(REF / "sem_seg" / f"{n}.png")), _gt(n), 21)
               for n in _ids(split))
    _assert_confusion(conf, ref["confusion"])
    rates = fp_fn_rates(conf)
    _assert_iou(rates["iou"], ref["iou"])
    _assert_iou(rates["fp"], ref["fp"])
    _assert_iou(rates["fn"], ref["fn"])
    _assert_close(mean_iou(rates["iou"]), ref["miou"])
    _assert_close(rates["printed_fp0_fn0"], _nan_list(ref["printed_fp0_fn0"]))
    _assert_close(rates["printed_mean_fp_fn_fg"], _nan_list(ref["printed_mean_fp_fn_fg"]))


# ---------------------------------------------------------------- hand-made arrays


def _per_threshold(cams, gts, thresholds, n_class):
    return np.stack([sum(confusion_matrix(cam_to_label(h, k, t), g, n_class)
                         for (h, k), g in zip(cams, gts)) for t in thresholds])


def test_confusion_matrix_small():
    gt = np.array([[0, 1, 255], [2, 2, 1]], dtype=np.uint8)
    pred = np.array([[0, 2, 7], [2, 0, 1]])
    conf = confusion_matrix(pred, gt, n_class=3)
    expected = np.array([[1, 0, 0], [0, 1, 1], [1, 0, 1]])
    np.testing.assert_array_equal(conf, expected)
    assert conf.dtype == np.int64


@pytest.mark.parametrize("pred, gt, what", [
    ([0, 3], [0, 1], "predicted"),
    ([0, 1], [0, 3], "ground-truth"),
    ([0, 255], [0, 1], "predicted"),
    ([-1, 0], [0, 1], "predicted"),
])
def test_confusion_matrix_out_of_range(pred, gt, what):
    with pytest.raises(ValueError, match=what):
        confusion_matrix(np.array(pred), np.array(gt), n_class=3)


def test_confusion_matrix_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros(3, int), np.zeros(4, int), n_class=3)


def test_iou_and_mean_without_warnings():
    conf = np.array([[2, 1, 0], [0, 0, 0], [0, 0, 0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        iou = iou_from_confusion(conf)
        np.testing.assert_allclose(iou, [2 / 3, 0.0, np.nan], equal_nan=True)
        assert mean_iou(iou) == pytest.approx(1 / 3)
        assert np.isnan(mean_iou([np.nan, np.nan]))
        assert np.isnan(among_predfg_bg(np.zeros((3, 3), int)))
        assert np.isnan(fp_fn_rates(conf)["printed_mean_fp_fn_fg"][0])


def test_ties_go_to_background():
    t = 0.15
    high_res = np.array([[[np.float32(t), 0.5]], [[np.float32(t), 0.5]]], dtype=np.float32)
    keys = np.array([3, 6])
    # pixel 0: both fg equal the threshold -> background; pixel 1: fg tie -> first fg class
    np.testing.assert_array_equal(cam_to_label(high_res, keys, t), [[0, 4]])
    sweep = ThresholdSweep([t], n_class=8)
    sweep.add(high_res, keys, np.array([[0, 4]], dtype=np.uint8))
    np.testing.assert_array_equal(np.diag(sweep.confusions[0])[[0, 4]], [1, 1])


def test_no_present_class():
    high_res = np.zeros((0, 2, 3), dtype=np.float32)
    keys = np.zeros(0, dtype=np.int64)
    gt = np.array([[0, 1, 2], [255, 2, 0]], dtype=np.uint8)
    label = cam_to_label(high_res, keys, 0.15)
    np.testing.assert_array_equal(label, np.zeros((2, 3)))
    assert label.dtype == np.int64
    sweep = ThresholdSweep([0.05, 0.15], n_class=3)
    sweep.add(high_res, keys, gt)
    expected = confusion_matrix(label, gt, 3)
    np.testing.assert_array_equal(sweep.confusions, [expected, expected])


def assert_sweep_equals_per_threshold(cams, gts, thresholds, n_class):
    """One ThresholdSweep over the images gives the per-threshold confusions."""
    sweep = ThresholdSweep(thresholds, n_class=n_class)
    for (high_res, keys), gt in zip(cams, gts):
        sweep.add(high_res, keys, gt)
    np.testing.assert_array_equal(sweep.confusions,
                                  _per_threshold(cams, gts, thresholds, n_class))


def test_sweep_equals_per_threshold_random():
    rng = np.random.default_rng(0)
    thresholds = np.arange(5, 60) / 100
    t32 = thresholds.astype(np.float32)
    cams, gts = [], []
    for k in (0, 1, 3, 2, 5):
        h, w = rng.integers(5, 30, size=2)
        high_res = rng.random((k, h, w), dtype=np.float32)
        if k:  # values exactly equal to float32 thresholds, and fg ties
            spots = rng.random((k, h, w)) < 0.3
            high_res[spots] = rng.choice(t32, size=spots.sum())
            high_res[-1, :2] = high_res[0, :2]
        keys = np.sort(rng.choice(20, size=k, replace=False))
        gt = rng.integers(0, 21, size=(h, w)).astype(np.uint8)
        gt[rng.random((h, w)) < 0.1] = 255
        cams.append((high_res, keys))
        gts.append(gt)
    assert_sweep_equals_per_threshold(cams, gts, thresholds, 21)


def _values_around(thresholds32):
    """float32 values at, just below and just above each threshold, and the awkward ones."""
    below = np.nextafter(thresholds32, np.float32(-np.inf))
    above = np.nextafter(thresholds32, np.float32(np.inf))
    special = np.array([0.0, -0.0, 1e-42, -1e-42, -0.3, 1.7, 3e38, np.inf, -np.inf, np.nan,
                        -np.nan], np.float32)
    return np.concatenate([thresholds32, below, above, special])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("gt_dtype", [np.uint8, np.int64])
def test_sweep_equals_per_threshold_at_threshold_neighbours(dtype, gt_dtype):
    """Every value next to a threshold, signed zeros, denormals, infinities and NaNs."""
    rng = np.random.default_rng(1)
    thresholds = np.concatenate([np.arange(10, 60, 2) / 100, [0.15, 0.15]])
    thresholds.sort()
    values = _values_around(thresholds.astype(np.float32)).astype(dtype)
    cams, gts = [], []
    for k in (1, 2, 3):
        high_res = rng.choice(values, size=(k, 4, values.size))
        high_res[:, 0] = values                       # every value as a channel's maximum
        keys = np.sort(rng.choice(8, size=k, replace=False))
        gt = rng.integers(0, 9, size=high_res.shape[1:]).astype(gt_dtype)
        gt[rng.random(gt.shape) < 0.2] = 255
        cams.append((high_res, keys))
        gts.append(gt)
    assert_sweep_equals_per_threshold(cams, gts, thresholds, 9)


@pytest.mark.parametrize("gt_dtype", [np.uint8, np.int32])
def test_sweep_refuses_an_out_of_range_label_and_keeps_its_counts(gt_dtype):
    sweep = ThresholdSweep([0.1, 0.2], n_class=3)
    high_res = np.full((1, 2, 2), 0.5, np.float32)
    sweep.add(high_res, np.array([1]), np.array([[0, 1], [2, 255]], gt_dtype))
    before = sweep.confusions
    with pytest.raises(ValueError, match="ground-truth label 3 outside"):
        sweep.add(high_res, np.array([1]), np.array([[0, 3], [255, 1]], gt_dtype))
    np.testing.assert_array_equal(sweep.confusions, before)
    assert sweep.n_images == 1


def test_sweep_nan_behaves_like_argmax():
    high_res = np.array([[[0.9, np.nan, 0.01, 0.3]], [[np.nan, 0.2, np.nan, 0.1]]], dtype=np.float32)
    keys = np.array([0, 4])
    gt = np.array([[1, 1, 5, 0]], dtype=np.uint8)
    thresholds = [0.05, 0.25, 0.5]
    sweep = ThresholdSweep(thresholds, n_class=6)
    sweep.add(high_res, keys, gt)
    np.testing.assert_array_equal(sweep.confusions,
                                  _per_threshold([(high_res, keys)], [gt], thresholds, 6))
    np.testing.assert_array_equal(cam_to_label(high_res, keys, 0.5), [[5, 1, 5, 0]])


def test_sweep_rejects_bad_input():
    with pytest.raises(ValueError, match="non-decreasing"):
        ThresholdSweep([0.2, 0.1], n_class=3)
    sweep = ThresholdSweep([0.1], n_class=3)
    with pytest.raises(ValueError, match="keys"):
        sweep.add(np.zeros((1, 2, 2), np.float32), np.array([2]), np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match="ground-truth"):
        sweep.add(np.zeros((1, 2, 2), np.float32), np.array([0]), np.full((2, 2), 3, np.uint8))


@pytest.mark.parametrize("mious, expected", [
    ([0.1, 0.2, 0.2, 0.5], (0.06, 0.2)),    # equal is not an improvement: stop
    ([0.3, 0.2, 0.9, 0.95], (0.05, 0.3)),   # stop at the first drop, later gains ignored
    ([0.1, 0.2, 0.3, 0.4], (0.08, 0.4)),
    ([0.0, 0.2, 0.3, 0.4], (0.0, 0.0)),     # first mIoU does not beat the initial 0
    ([0.1, np.nan, 0.3, 0.4], (0.05, 0.1)),  # NaN does not improve
])
def test_original_early_stop_best(mious, expected):
    assert original_early_stop_best(mious, [0.05, 0.06, 0.07, 0.08]) == expected
