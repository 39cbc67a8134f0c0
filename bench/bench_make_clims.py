"""make_clims / make_cam CAM inference per image: today's path vs the folded network.

    python bench/bench_make_clims.py [--images 3] [--size 375 500] [--repeats 3]
        [--threads 2] [--weights res50_qa_clims.pth] [--no_bf16]

"Today" is the path make_cam ran before this change, copied here: the eager
CAM network (NCHW tensors, ``torch.no_grad``), every class resized over the
scales, then the tagged ones kept and normalised. "New" is what make_clims
runs now: ``step.make_cam.image_cams`` with ``net.resnet50_cam.InferenceCAM``
(the ResNet-50 with BatchNorm folded, ``net.folded_resnet``) under
``torch.inference_mode``, in float32 and with ``--amp`` (bf16 autocast on
CPU). Both get the same MultiScaleDataset items (4 scales x flip) of
synthetic VOC-size images drawn by the demo generator (1-3 classes each);
the weights are the authors' checkpoint layout filled by the fixtures' tool
(``--weights`` takes a real checkpoint instead).

After one warm-up call each (oneDNN builds its kernels for a shape once), the
three paths run interleaved (today, new, new bf16 for each image and
repeat), so the load of a shared machine hits them alike. Printed: the
median wall seconds per image of each path, the median of the paired ratios
(wall, and process CPU time, which load disturbs less), the
largest |CAM difference| of new vs today (normalised ``cam`` and
``high_res``), and for bf16 the share of pixels whose eval_cam label (the
argmax behind ``--cam_eval_thres`` 0.15) equals today's float32 label.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from data.loaders import multiscale_inputs  # noqa: E402
from net.checkpoint import load_weights  # noqa: E402
from net.registry import RESNET50  # noqa: E402
from net.resnet50_cam import InferenceCAM  # noqa: E402
from pipeline.engine import autocast_context  # noqa: E402
from step.make_cam import cpu_has_bf16_kernels, image_cams  # noqa: E402
from tools.make_demo_voc import layout_image, render_image  # noqa: E402
from wsss.cam import fuse_multiscale, normalize_cams  # noqa: E402
from wsss.metrics import cam_to_label  # noqa: E402

FIXTURE_SET = os.path.join(REPO, 'tests', 'fixtures', 'reference')
SCALES = (1.0, 0.5, 1.5, 2.0)
CAM_EVAL_THRES = 0.15


def fixture_layout_weights(out_path):
    """The authors' res50_qa_clims.pth layout filled by the fixtures' generator."""
    with open(os.path.join(FIXTURE_SET, 'layouts', 'checksums.json')) as f:
        recipe = json.load(f)['clims_state_dict']
    subprocess.run([sys.executable, os.path.join(FIXTURE_SET, '..', 'tools', 'make_weights.py'),
                    '--layout', os.path.join(FIXTURE_SET, 'layouts', 'clims_state_dict.json'),
                    '--out', out_path, '--salt', recipe['salt'], '--rule', recipe['rule']],
                   check=True, cwd=FIXTURE_SET, stdout=subprocess.DEVNULL)
    return out_path


def synthetic_packs(n_images, size, seed=0):
    """MultiScaleDataset-like items (batch of 1) of demo-generator images of ``size``."""
    rng = np.random.default_rng(seed)
    height, width = size
    packs = []
    for _ in range(n_images):
        classes = [int(c) for c in rng.choice(20, size=int(rng.integers(1, 4)), replace=False)]
        objects, _ = layout_image(rng, classes, width, height)
        img = render_image(rng, objects, width, height)
        label = torch.zeros(1, 20)
        label[0, classes] = 1
        packs.append({'img': [x[None] for x in multiscale_inputs(img, SCALES)],
                      'size': (torch.tensor([height]), torch.tensor([width])), 'label': label})
    return packs


def todays_image_cams(model, pack):
    """make_cam's per-image path before the folded network (eager, all classes fused)."""
    size = (int(pack['size'][0]), int(pack['size'][1]))
    outputs = [model(img[0]).float() for img in pack['img']]
    strided, high_res = fuse_multiscale(outputs, size, model.stride)
    keys = torch.nonzero(pack['label'][0])[:, 0]
    return (keys.numpy().astype(np.int64), normalize_cams(strided[keys]).numpy(),
            normalize_cams(high_res[keys]).numpy())


def timed(fn, clocks):
    """fn(), its wall and process-CPU seconds appended to ``clocks``."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    clocks['wall'].append(time.perf_counter() - wall)
    clocks['cpu'].append(time.process_time() - cpu)
    return out


def run_today(model, pack):
    with torch.no_grad():
        return todays_image_cams(model, pack)


def run_new(network, pack, amp):
    with torch.inference_mode(), autocast_context(torch.device('cpu'), amp):
        return image_cams(network, pack, torch.device('cpu'))


def measure(model, network, packs, repeats, with_bf16):
    """Per path: wall and CPU seconds of every image and round; the largest CAM
    differences of new vs today; the share of bf16 eval_cam labels equal to today's."""
    run_today(model, packs[0])
    for amp in (False, True) if with_bf16 else (False,):
        run_new(network, packs[0], amp)
    times = {path: {'wall': [], 'cpu': []} for path in ('today', 'new', 'bf16')}
    max_diff = {'cam': 0.0, 'high_res': 0.0}
    equal = total = 0
    for _ in range(repeats):
        for pack in packs:
            keys, cam, high_res = timed(lambda: run_today(model, pack), times['today'])
            new_keys, new_cam, new_high_res = timed(lambda: run_new(network, pack, False),
                                                    times['new'])
            assert np.array_equal(keys, new_keys)
            max_diff['cam'] = max(max_diff['cam'], float(np.abs(new_cam - cam).max()))
            max_diff['high_res'] = max(max_diff['high_res'],
                                       float(np.abs(new_high_res - high_res).max()))
            if with_bf16:
                _, _, bf16_high_res = timed(lambda: run_new(network, pack, True), times['bf16'])
                labels = cam_to_label(high_res, keys, CAM_EVAL_THRES)
                equal += int((cam_to_label(bf16_high_res, keys, CAM_EVAL_THRES) == labels).sum())
                total += labels.size
    return times, max_diff, (equal / total if total else None)


def paired_ratio(times, slow, fast, clock='wall'):
    """Median over images and rounds of slow / fast (each pair measured side by side)."""
    return float(np.median(np.array(times[slow][clock]) / np.array(times[fast][clock])))


def median_wall(times, path):
    return float(np.median(times[path]['wall']))


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--images', type=int, default=3)
    p.add_argument('--size', type=int, nargs=2, default=(375, 500), metavar=('H', 'W'))
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--weights', default=None,
                   help='a QA-CLIMS checkpoint (default: the fixture layout\'s weights)')
    p.add_argument('--no_bf16', action='store_true', help='skip the --amp (bf16) path')
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        weights = a.weights or fixture_layout_weights(os.path.join(tmp, 'res50_qa_clims.pth'))
        model = load_weights(RESNET50.clims_cam(20), weights).eval()
    network = InferenceCAM(model)
    packs = synthetic_packs(a.images, a.size)
    load_before = os.getloadavg()[0]
    times, max_diff, labels_equal = measure(model, network, packs, a.repeats, not a.no_bf16)
    print('%d images of %dx%d, scales %s x flip, %d threads, %d repeats, interleaved; '
          'load average %.1f before, %.1f after; bf16 kernels on this CPU: %s'
          % (a.images, a.size[0], a.size[1], ','.join(map(str, SCALES)), a.threads, a.repeats,
             load_before, os.getloadavg()[0], 'yes' if cpu_has_bf16_kernels() else 'no'))
    print('make_clims fp32: today-path %.2f s/img, new %.2f s/img: %.2fx (target >= 1.6x; '
          'CPU time %.2fx), max |CAM diff| cam %.1e, high_res %.1e'
          % (median_wall(times, 'today'), median_wall(times, 'new'),
             paired_ratio(times, 'today', 'new'), paired_ratio(times, 'today', 'new', 'cpu'),
             max_diff['cam'], max_diff['high_res']))
    if labels_equal is not None:
        print('make_clims bf16: new %.2f s/img: %.2fx vs today\'s fp32 (target >= 3x; CPU time '
              '%.2fx), labels equal %.3f%% (target >= 99.9%%)'
              % (median_wall(times, 'bf16'), paired_ratio(times, 'today', 'bf16'),
                 paired_ratio(times, 'today', 'bf16', 'cpu'), 100 * labels_equal))


if __name__ == '__main__':
    main()
