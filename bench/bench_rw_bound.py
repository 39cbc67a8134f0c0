"""How much IRNet's random walk can add to a run's CAMs (README: the demo).

    python bench/bench_rw_bound.py demo_out/work_space [--exp_times 2,4,8] [--bg 0.25,0.35]

For the images make_sem_seg's pseudo masks are scored on (``--chainer_eval_set``
of the run), it makes the pseudo masks of docs/method.md#random-walk twice
for every ``--exp_times`` and background threshold: with the boundary map of
the run's IRNet, and with the ground truth's object boundaries in its place
(:func:`ground_truth_boundary`: what a boundary network that made no mistake
would give). It prints the mIoU and background IoU of each, next to the
run's CAM mIoU (``eval_cam.json``): if even the ground-truth boundaries add
little, what the pseudo masks lack is in the CAMs, not in IRNet. Reads the
run's ``run_args.json`` for its dataset, CAMs and IRNet weights; writes
nothing.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data.loaders import MultiScaleDataset  # noqa: E402
from net.checkpoint import load_weights  # noqa: E402
from net.registry import cam_network  # noqa: E402
from net.resnet50_irn import edge_map  # noqa: E402
from pipeline.paths import in_work_space  # noqa: E402
from pipeline.stage import build_source, cam_files_of  # noqa: E402
from step.eval_sem_seg import scored_image_ids  # noqa: E402
from step.make_sem_seg_labels import pseudo_labels  # noqa: E402
from wsss.metrics import IGNORE_INDEX, confusion_matrix, iou_from_confusion, mean_iou  # noqa: E402


def ground_truth_boundary(mask, shape, stride=4):
    """float [1, h, w]: the ground truth's object boundaries on IRNet's stride-4 grid.

    The random walk zeroes the CAMs on boundary cells and cuts every path
    through them (docs/method.md#random-walk), so a boundary drawn on both
    sides of a label change would erode each object by a cell. Here it lies
    on one side only: a cell is marked where it is void, or where a
    4-neighbour has a larger label (background is 0, so the background side
    of every object's outline; between two objects, the smaller class's side).
    """
    cells = torch.from_numpy(mask[::stride, ::stride].astype(np.int64))[:shape[0], :shape[1]]
    void = cells == IGNORE_INDEX
    edge = void.clone()
    for first, second in (((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
                          ((slice(None, -1), slice(None)), (slice(1, None), slice(None)))):
        known = ~void[first] & ~void[second]
        edge[first] |= known & (cells[first] < cells[second])
        edge[second] |= known & (cells[second] < cells[first])
    return edge.float()[None]


def bound_table(run_args, exp_times, bg_thresholds):
    """{(edge source, exp_times, bg): confusion matrix} over the run's scored images."""
    source = build_source(run_args)
    ids = scored_image_ids(run_args, source)
    cam_files = cam_files_of(run_args)
    weights = in_work_space(run_args.work_space, run_args.irn_weights_name)
    model = load_weights(cam_network(run_args.cam_network).irnet(), weights).eval()
    n_class = source.n_classes + 1
    confusions = {}
    with torch.no_grad():
        for pack in tqdm(MultiScaleDataset(source, ids, (1.0,)), desc='rw bound'):
            image_id = pack['name']
            gt = source.read_mask(image_id)
            edges = {'IRNet': edge_map(model, pack['img'][0])}
            edges['ground truth'] = ground_truth_boundary(gt, edges['IRNet'].shape[1:])
            cams = cam_files.load(image_id, required=('keys', 'cam'))
            cam = torch.from_numpy(cams['cam'])
            for name, edge in edges.items():
                for steps in exp_times:
                    labels = pseudo_labels(cam, cams['keys'], edge, gt.shape, run_args.beta,
                                           steps, bg_thresholds)
                    for bg, label in zip(bg_thresholds, labels):
                        key = (name, steps, bg)
                        confusions[key] = confusions.get(key, 0) + confusion_matrix(
                            label, gt, n_class)
    return confusions


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('work_space', help='a run\'s work_space (with run_args.json)')
    p.add_argument('--exp_times', default='2,4,8')
    p.add_argument('--bg', default='0.25,0.35')
    a = p.parse_args(argv)
    with open(os.path.join(a.work_space, 'run_args.json')) as f:
        run_args = argparse.Namespace(**json.load(f))
    run_args.work_space = a.work_space
    confusions = bound_table(run_args, [int(s) for s in a.exp_times.split(',')],
                             [float(s) for s in a.bg.split(',')])
    with open(os.path.join(a.work_space, 'eval_cam.json')) as f:
        cam = json.load(f)
    line = 'CAMs (eval_cam.json): mIoU %.1f at threshold %.2f' % (100 * cam['miou'],
                                                                  cam['threshold'])
    if 'best' in cam:
        line += ', %.1f at its best %.2f' % (100 * cam['best']['miou'], cam['best']['threshold'])
    print(line)
    print('| boundary | exp_times | background threshold | mIoU | background IoU |')
    print('|---|---|---|---|---|')
    for (name, steps, bg), conf in confusions.items():
        iou = iou_from_confusion(conf)
        print('| %s | %d | %.2f | %.1f | %.1f |' % (name, steps, bg, 100 * mean_iou(iou),
                                                   100 * iou[0]))


if __name__ == '__main__':
    main()
