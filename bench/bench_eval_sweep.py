"""eval_cam threshold sweep: one pass over the CAM files vs the reference's
one reload + argmax per threshold (55 thresholds, 0.05..0.59).

    python bench/bench_eval_sweep.py [--n_images 60] [--size 375 500] [--repeat 3]

Synthetic CAMs and masks of VOC-like size are written to a temporary folder
first; both methods read them from disk, as eval_cam does, side by side in
one run. The one pass is timed ``--repeat`` times (the median is used), the
reload per threshold once. Prints the wall times, their ratio (the issue's
ratio line, target >= 50x) and whether the confusion matrices are identical.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data.registry import DATASETS  # noqa: E402
from misc.io import load_npz, save_npz  # noqa: E402
from wsss.metrics import ThresholdSweep, cam_to_label, confusion_matrix  # noqa: E402

THRESHOLDS = [i / 100.0 for i in range(5, 60)]
N_CLASSES = DATASETS['voc12'].n_classes          # VOC-like masks: ids 0..N_CLASSES
TARGET = 50                                  # issue 14


def write_synthetic(folder, n_images, size, rng):
    """CAM files with 1-3 smooth maps and GT masks with a void band."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n_images):
        k = int(rng.integers(1, 4))
        keys = np.sort(rng.choice(N_CLASSES, size=k, replace=False))
        centres = rng.uniform(0, 1, (k, 2)) * [h, w]
        dist = np.stack([np.hypot(yy - cy, xx - cx) for cy, cx in centres])
        cams = np.exp(-(dist / (0.25 * min(h, w))) ** 2).astype(np.float32)
        gt = np.where(dist.min(0) < 0.2 * min(h, w), keys[dist.argmin(0)] + 1, 0).astype(np.uint8)
        gt[(dist.min(0) > 0.19 * min(h, w)) & (dist.min(0) < 0.21 * min(h, w))] = 255
        save_npz(os.path.join(folder, '%04d.npz' % i), keys=keys, high_res=cams, gt=gt)


def per_threshold_reload(folder, names):
    confusions = []
    for t in THRESHOLDS:
        conf = np.zeros((N_CLASSES + 1, N_CLASSES + 1), np.int64)
        for name in names:
            d = load_npz(os.path.join(folder, name))
            conf += confusion_matrix(cam_to_label(d['high_res'], d['keys'], t), d['gt'],
                                     N_CLASSES + 1)
        confusions.append(conf)
    return np.stack(confusions)


def one_pass(folder, names):
    sweep = ThresholdSweep(THRESHOLDS, N_CLASSES + 1)
    for name in names:
        d = load_npz(os.path.join(folder, name))
        sweep.add(d['high_res'], d['keys'], d['gt'])
    return sweep.confusions


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--n_images', type=int, default=60)
    p.add_argument('--size', type=int, nargs=2, default=(375, 500))
    p.add_argument('--repeat', type=int, default=3,
                   help='timed runs of the one pass (the median is reported)')
    a = p.parse_args()
    if a.repeat < 1 or a.n_images < 1:
        p.error('--repeat and --n_images must be >= 1')
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        write_synthetic(folder, a.n_images, a.size, np.random.default_rng(0))
        names = sorted(os.listdir(folder))
        runs = [timed(one_pass, folder, names) for _ in range(a.repeat)]
        t_ours, ours = statistics.median(t for t, _ in runs), runs[0][1]
        t_ref, ref = timed(per_threshold_reload, folder, names)
    print('%d images of %dx%d, %d thresholds; load average %.1f before, %.1f after'
          % (a.n_images, a.size[0], a.size[1], len(THRESHOLDS), load_before,
             os.getloadavg()[0]))
    print('one pass:             %.2f s (median of %d: %s)'
          % (t_ours, a.repeat, ', '.join('%.2f' % t for t, _ in runs)))
    print('reload per threshold: %.2f s' % t_ref)
    print('identical confusions: %s' % bool(np.array_equal(ours, ref)))
    print('eval_cam sweep vs reload per threshold (%d images, %d thresholds): %.1fx '
          '(target >= %dx)' % (a.n_images, len(THRESHOLDS), t_ref / t_ours, TARGET))


if __name__ == '__main__':
    main()
