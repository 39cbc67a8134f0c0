"""Segmentation metrics for CAM and pseudo-mask evaluation
(docs/method.md#cam-evaluation).

Reproduces the numbers of the reference ``step/eval_cam.py`` and
``step/eval_sem_seg.py`` (chainercv ``calc_semantic_segmentation_confusion``):

* confusion matrix: rows = ground truth, columns = prediction, GT void
  (255) pixels ignored;
* IoU = diag / (rowsum + colsum - diag), NaN for classes absent from both;
  mIoU = nanmean.

chainercv grows the confusion matrix to max label + 1; here ``n_class`` is
the dataset's (background + its classes: 21 on VOC). The extra rows/columns
are zero, their IoU is NaN, so the mIoU is identical.

:class:`ThresholdSweep` evaluates every background threshold of the
reference ``--eval_cam_best`` sweep in one pass over the images.
"""
import numpy as np

IGNORE_INDEX = 255


def _check_labels(labels, n_class, what):
    """Raise ValueError if any label lies outside [0, n_class)."""
    if labels.size and (labels.min() < 0 or labels.max() >= n_class):
        bad = labels[(labels < 0) | (labels >= n_class)]
        raise ValueError(
            f"{what} label {int(bad[0])} outside [0, {n_class}) "
            f"({bad.size} pixel(s)); map it to a class or to the ignore index first")


def confusion_matrix(pred, gt, n_class, ignore_index=IGNORE_INDEX):
    """Confusion matrix int64 [n_class, n_class] (rows GT, columns prediction).

    Pixels whose GT equals ``ignore_index`` are skipped (whatever their
    prediction). Every other GT and prediction label must lie in
    [0, n_class), otherwise ValueError.
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"pred shape {pred.shape} != gt shape {gt.shape}")
    valid = gt != ignore_index
    gt_v = gt[valid].astype(np.int64)
    pred_v = pred[valid].astype(np.int64)
    _check_labels(gt_v, n_class, "ground-truth")
    _check_labels(pred_v, n_class, "predicted")
    counts = np.bincount(gt_v * n_class + pred_v, minlength=n_class * n_class)
    return counts.reshape(n_class, n_class)


def iou_from_confusion(conf):
    """Per-class IoU float64 from a confusion matrix (last two axes).

    ``diag / (rowsum + colsum - diag)``; NaN where the class is absent from
    both GT and prediction. Works on a stack [..., C, C] too.
    """
    conf = np.asarray(conf)
    diag = np.diagonal(conf, axis1=-2, axis2=-1)
    denominator = conf.sum(axis=-1) + conf.sum(axis=-2) - diag
    with np.errstate(divide="ignore", invalid="ignore"):
        return diag / denominator.astype(np.float64)


def mean_iou(iou):
    """nanmean of a 1-D IoU vector as a float; NaN (no warning) if all NaN."""
    iou = np.asarray(iou, dtype=np.float64)
    if np.isnan(iou).all():
        return float("nan")
    return float(np.nanmean(iou))


def cam_to_label(high_res, keys, threshold):
    """Class-id map int64 [H, W] of the reference eval_cam argmax.

    A constant channel equal to ``threshold`` (cast to the CAM dtype, float32
    for the pipeline's CAMs) is put in front of the K CAMs, ``np.argmax``
    picks the first maximal channel (so background wins ties, and a NaN CAM
    value wins over everything, first NaN first), and channel j maps to
    ``[0, keys[0] + 1, ...][j]``. K may be 0 (all background).
    """
    high_res = np.asarray(high_res)
    keys = np.asarray(keys, dtype=np.int64)
    padded = np.pad(high_res, ((1, 0), (0, 0), (0, 0)), mode="constant",
                    constant_values=threshold)
    lookup = np.pad(keys + 1, (1, 0), mode="constant")
    return lookup[np.argmax(padded, axis=0)]


def _first_max_channel(high_res, fg_max):
    """Per pixel, the channel np.argmax(high_res, axis=0) picks: the first maximal one.

    ``fg_max`` = high_res.max(axis=0). Where a pixel holds a NaN (fg_max is
    NaN) np.argmax picks its first NaN; those few pixels are handed to it.
    """
    channel = np.zeros(fg_max.shape, np.min_scalar_type(high_res.shape[0]))
    for k in range(high_res.shape[0] - 1, -1, -1):      # the last write is the first maximum
        np.copyto(channel, k, where=high_res[k] == fg_max)
    nan = np.isnan(fg_max)
    if nan.any():
        channel[nan] = np.argmax(high_res[:, nan], axis=0)
    return channel


def _fg_max_and_channel(high_res):
    """Per pixel: foreground max m and its first argmax channel (uint8 for K <= 255).

    At threshold t the reference predicts that channel's class if m > t, else
    background (docs/method.md#cam-evaluation). With K = 0, m = -inf (never
    above a threshold) and the channel is 0. A NaN CAM value makes m NaN and
    its channel the argmax, as np.argmax does.
    """
    if high_res.shape[0] == 0:
        shape = high_res.shape[1:]
        return np.full(shape, -np.inf, high_res.dtype), np.zeros(shape, np.uint8)
    fg_max = high_res.max(axis=0)
    return fg_max, _first_max_channel(high_res, fg_max)


_BUCKET_SHIFT = 12      # float32 bit patterns >> 12: 2^20 buckets of 4096 neighbouring floats
_UNSURE = 255           # bucket table entry: a threshold falls inside the bucket


def float32_bucket_table(thresholds32):
    """uint8 [2^20]: #thresholds < m for every float32 m of a bucket, or _UNSURE.

    A bucket holds the floats whose bit patterns share their top 20 bits.
    ``n(m) = searchsorted(thresholds, m, 'left')`` is monotone in m (NaN
    last), and the values of a bucket lie between its first bit pattern and
    the next bucket's first one (the last pattern closes the last bucket);
    where n agrees at both, it is constant on the bucket, otherwise (a
    threshold inside, or at a sign or NaN boundary) the bucket is _UNSURE.
    """
    starts = np.arange(1 << (32 - _BUCKET_SHIFT), dtype=np.uint32) << _BUCKET_SHIFT
    ends = np.searchsorted(thresholds32, np.append(starts, np.uint32(0xFFFFFFFF)).view(np.float32),
                           side="left")
    return np.where(ends[:-1] == ends[1:], ends[:-1], _UNSURE).astype(np.uint8)


class ThresholdSweep:
    """Confusion matrices of many background thresholds in one pass.

    For every threshold t in ``thresholds`` (non-decreasing), ``confusions[i]``
    equals the sum over the added images of
    ``confusion_matrix(cam_to_label(high_res, keys, t), gt, n_class)``.

    Method (docs/method.md#cam-evaluation): a pixel with foreground max m is predicted
    foreground at threshold t iff m > t (t cast to the CAM dtype, ties go to
    background). With ascending thresholds, ``n = searchsorted(t, m, 'left')``
    counts the thresholds strictly below m: the pixel is foreground for
    thresholds 0..n-1 and background from n on. NaN CAM values sort above
    every threshold (always foreground), as np.argmax makes them win. ONE
    histogram over (n, gt row, foreground class) is accumulated per image with
    np.bincount (void and out-of-range GT labels get rows of their own, the
    latter raise); suffix sums over n give the foreground part of each
    threshold's confusion and the remaining pixels of each GT row go to the
    background column. For float32 CAMs n is read from a table indexed by the
    top 20 bits of m (:func:`float32_bucket_table`), with searchsorted only for
    the pixels of the few buckets a threshold splits: the same n.
    """

    def __init__(self, thresholds, n_class, ignore_index=IGNORE_INDEX):
        thresholds = np.asarray(thresholds, dtype=np.float64)
        if thresholds.ndim != 1 or thresholds.size == 0:
            raise ValueError("thresholds must be a non-empty 1-D sequence")
        if np.any(np.diff(thresholds) < 0):
            raise ValueError("thresholds must be non-decreasing")
        self.thresholds = thresholds
        self.n_class = n_class
        self.ignore_index = ignore_index
        self.n_images = 0
        self._hist = np.zeros((thresholds.size + 1, n_class, n_class), np.int64)
        self._bucket_table = None

    def add(self, high_res, keys, gt):
        """Accumulate one image: CAMs [K, H, W], keys [K] (0-based), GT [H, W]."""
        high_res = np.asarray(high_res)
        keys = np.asarray(keys, dtype=np.int64)
        gt = np.asarray(gt)
        self._check_inputs(high_res, keys, gt)
        fg_max, channel = _fg_max_and_channel(high_res)
        c, n_channels = self.n_class, max(keys.size, 1)
        index = np.multiply(self._count_below(fg_max), (c + 2) * n_channels, dtype=np.intp)
        index += self._gt_rows(gt, stride=n_channels)
        index += channel
        counts = np.bincount(index.reshape(-1),
                             minlength=self._hist.shape[0] * (c + 2) * n_channels)
        counts = counts.reshape(self._hist.shape[0], c + 2, n_channels)
        if counts[:, c + 1].any():
            _check_labels(gt[gt != self.ignore_index], c, "ground-truth")
        labels = keys + 1 if keys.size else np.zeros(1, np.int64)
        np.add.at(self._hist, (slice(None), slice(None), labels), counts[:, :c])
        self.n_images += 1

    def _count_below(self, fg_max):
        """Per pixel, the number of thresholds (cast to the CAM dtype) strictly below m."""
        thresholds = self.thresholds.astype(fg_max.dtype)
        if fg_max.dtype != np.float32 or thresholds.size >= _UNSURE:
            return np.searchsorted(thresholds, fg_max, side="left")
        if self._bucket_table is None:
            self._bucket_table = float32_bucket_table(thresholds)
        bits = np.ascontiguousarray(fg_max).view(np.uint32)
        count = np.take(self._bucket_table, bits >> _BUCKET_SHIFT)
        unsure = count == _UNSURE
        if unsure.any():
            count[unsure] = np.searchsorted(thresholds, fg_max[unsure], side="left")
        return count

    def _gt_rows(self, gt, stride):
        """intp [H, W]: ``stride`` times the histogram row of each pixel.

        The row is the GT label, n_class for ignore_index and n_class + 1 for
        any other label (refused after counting).
        """
        c = self.n_class
        if gt.dtype == np.uint8:
            lookup = np.full(256, c + 1, np.intp)
            lookup[:min(c, 256)] = np.arange(min(c, 256))
            if 0 <= self.ignore_index < 256:
                lookup[self.ignore_index] = c
            return np.take(lookup * stride, gt)
        inside = (gt >= 0) & (gt < c)
        rows = np.where(gt == self.ignore_index, c, np.where(inside, gt, c + 1))
        return rows.astype(np.intp) * stride

    def _check_inputs(self, high_res, keys, gt):
        if high_res.ndim != 3 or not np.issubdtype(high_res.dtype, np.floating):
            raise ValueError(f"high_res must be a float [K, H, W] array, got {high_res.dtype} {high_res.shape}")
        if keys.shape != (high_res.shape[0],):
            raise ValueError(f"keys shape {keys.shape} does not match K = {high_res.shape[0]}")
        if gt.shape != high_res.shape[1:]:
            raise ValueError(f"gt shape {gt.shape} != CAM shape {high_res.shape[1:]}")
        _check_labels(keys, self.n_class - 1, "keys (0-based class id)")

    @property
    def confusions(self):
        """int64 [T, n_class, n_class]: one confusion matrix per threshold."""
        suffix = np.cumsum(self._hist[::-1], axis=0)[::-1]
        fg = suffix[1:].copy()  # fg[i] = pixels with n > i, i.e. foreground at threshold i
        rows = self._hist.sum(axis=(0, 2))
        fg[:, :, 0] += rows - fg.sum(axis=2)
        return fg

    def ious(self):
        """float64 [T, n_class] per-class IoU for every threshold."""
        return iou_from_confusion(self.confusions)

    def mious(self):
        """float64 [T] mIoU (nanmean) for every threshold."""
        return np.array([mean_iou(iou) for iou in self.ious()])

    def result(self, i):
        """dict(threshold, confusion, iou, miou) for threshold index ``i``."""
        conf = self.confusions[i]
        iou = iou_from_confusion(conf)
        return {"threshold": float(self.thresholds[i]), "confusion": conf,
                "iou": iou, "miou": mean_iou(iou)}


def original_early_stop_best(sweep_mious, thresholds):
    """(threshold, mIoU) reported by the reference ``--eval_cam_best`` loop.

    The reference starts from best = (0, 0.0), walks the thresholds in the
    given (ascending) order, keeps a threshold only if its mIoU is STRICTLY
    greater than the best so far, and ``break``s at the first one that is not
    (equal or NaN included); best and previous coincide under that rule. If
    even the first threshold does not beat 0.0, it reports (0.0, 0.0).
    """
    best_thres, best_miou = 0.0, 0.0
    for thres, miou in zip(thresholds, sweep_mious):
        if best_miou < miou:
            best_thres, best_miou = float(thres), float(miou)
        else:
            break
    return best_thres, best_miou


def among_predfg_bg(conf):
    """Fraction of predicted-foreground pixels whose GT is background.

    ``(resj[1:].sum() - conf[1:, 1:].sum()) / resj[1:].sum()`` as the
    reference prints it (NaN, without a warning, if nothing is foreground).
    """
    conf = np.asarray(conf)
    pred_fg = conf[:, 1:].sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(pred_fg - conf[1:, 1:].sum()) / pred_fg)


def fp_fn_rates(conf):
    """FP/FN rates of the reference eval_sem_seg.

    ``fp = 1 - gtj / denominator`` and ``fn = 1 - resj / denominator`` with
    gtj = row sums (GT), resj = column sums (prediction), denominator =
    gtj + resj - diag; NaN for absent classes. The printed summaries are
    ``(fp[0], fn[0])`` and the PLAIN ``np.mean`` over classes 1.., hence NaN
    as soon as one class is absent. (The reference's matrix stops at the max
    label seen, so with a fixed n_class the mean can only differ when every
    class up to that label is present and later ones are not.)

    Returns dict with ``fp``, ``fn``, ``iou`` (float64 [n_class]),
    ``printed_fp0_fn0`` and ``printed_mean_fp_fn_fg`` (pairs of floats).
    """
    conf = np.asarray(conf)
    gtj = conf.sum(axis=1)
    resj = conf.sum(axis=0)
    denominator = (gtj + resj - np.diag(conf)).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        fp = 1.0 - gtj / denominator
        fn = 1.0 - resj / denominator
    return {
        "fp": fp,
        "fn": fn,
        "iou": iou_from_confusion(conf),
        "printed_fp0_fn0": (float(fp[0]), float(fn[0])),
        "printed_mean_fp_fn_fg": (float(np.mean(fp[1:])), float(np.mean(fn[1:]))),
    }
