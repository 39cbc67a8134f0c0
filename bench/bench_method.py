"""The method on the demo's synthetic world, over several seeds (README: the demo).

    python bench/bench_method.py [--seeds 0,1,2] [--out bench_out] [--device cpu]

Runs the demo pipeline (run_demo.py, its defaults) once per seed, with the
random-CLIP ablation: QA-CLIMS from the same baseline with the tiny CLIP
untrained, which shows that the gain comes from image-text matching and not
from the longer training. Prints one row per result, mean +- std over the
seeds and each seed's value, and the issue's targets with whether each seed
meets them; writes the table and every seed's results to ``<out>/bench_method.json``.
"""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import run_demo  # noqa: E402
from misc.io import atomic_write  # noqa: E402

#: (row name, value of one seed's results: percent unless the name says seconds)
ROWS = (('CLIP zero-shot accuracy (held-out crops of their largest object)',
         lambda r: 100 * r['clip']['clip']['crop_accuracy']),
        ('CLIP zero-shot accuracy (all held-out crops)',
         lambda r: 100 * r['clip']['clip']['crop_accuracy_all']),
        ('random CLIP zero-shot accuracy',
         lambda r: 100 * r['clip']['random_clip']['crop_accuracy']),
        ('baseline CAM mIoU (train)', lambda r: 100 * r['baseline_cam']['miou']),
        ('QA-CLIMS with a random CLIP, CAM mIoU (train)',
         lambda r: 100 * r['qa_clims_cam_random_clip']['miou']),
        ('QA-CLIMS CAM mIoU (train)', lambda r: 100 * r['qa_clims_cam']['miou']),
        ('pseudo masks mIoU (train)', lambda r: 100 * r['pseudo_mask']['miou']),
        ('pseudo masks background IoU (train)',
         lambda r: 100 * r['pseudo_mask']['background_iou']),
        ('segmentation mIoU (val, dense CRF as in the recipe)',
         lambda r: 100 * r['segmentation']['miou']),
        ('segmentation mIoU (val, without CRF)',
         lambda r: 100 * r['segmentation_without_crf']['miou']),
        ('pipeline seconds (CPU run, as loaded)', lambda r: r['total_seconds']))


def targets(r):
    """The issue's targets for one seed: {name: met}."""
    base, qa = 100 * r['baseline_cam']['miou'], 100 * r['qa_clims_cam']['miou']
    pseudo, seg = 100 * r['pseudo_mask']['miou'], 100 * r['segmentation']['miou']
    return {'CLIP accuracy >= 90%': r['clip']['clip']['crop_accuracy'] >= 0.9,
            'QA-CLIMS >= baseline + 5': qa >= base + 5,
            'pseudo >= QA-CLIMS + 5': pseudo >= qa + 5,
            'pseudo background IoU >= 70': r['pseudo_mask']['background_iou'] >= 0.7,
            'segmentation >= 90% of pseudo': seg >= 0.9 * pseudo}


def mean_std(values):
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def table(results):
    """Markdown table: each row's mean +- std and per-seed values (percent; seconds as is)."""
    seeds = [r['seed'] for r in results]
    lines = ['| | mean +- std | %s |' % ' | '.join('seed %d' % s for s in seeds),
             '|---|---|' + '---|' * len(seeds)]
    for name, get in ROWS:
        values = [get(r) for r in results]
        mean, std = mean_std(values)
        lines.append('| %s | %.1f +- %.1f | %s |' % (name, mean, std,
                                                    ' | '.join('%.1f' % v for v in values)))
    met = [targets(r) for r in results]
    for name in met[0]:
        lines.append('| target: %s | %d of %d seeds | %s |' % (
            name, sum(m[name] for m in met), len(met),
            ' | '.join('met' if m[name] else 'not met' for m in met)))
    return '\n'.join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--seeds', default='0,1,2')
    p.add_argument('--out', default='bench_out')
    p.add_argument('--device', default='cpu')
    a = p.parse_args(argv)
    start = time.time()
    results = []
    for seed in (int(s) for s in a.seeds.split(',')):
        results.append(run_demo.main(['--out', os.path.join(a.out, 'seed%d' % seed),
                                      '--seed', str(seed), '--device', a.device,
                                      '--random_clip_ablation']))
    text = table(results)
    print('\nbench_method: the demo pipeline over seeds %s (%.0f s)\n%s' % (
        a.seeds, time.time() - start, text))
    with atomic_write(os.path.join(a.out, 'bench_method.json'), 'w') as f:
        json.dump({'table': text, 'results': results}, f, indent=1)


if __name__ == '__main__':
    main()
