"""Masks for new images with a trained segmentation network; no dataset needed.

    python tools/predict.py --weights ws/deeplab_seg.safetensors --images 'new/*.jpg' --out masks_out

Writes ``masks/`` (class-id PNGs), ``color/`` (palette PNGs), ``overlay/``
and ``predictions.json`` (per image the classes found and their pixel
fractions) in ``--out``; resumes a killed run. Inference as eval_seg's:
``--scales`` (multi-scale), ``--flip``, ``--crf``; the weights file (train_seg's)
records the architecture, MSC and the class names. See step/predict.py.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from misc import dist  # noqa: E402
from misc.io import release_outputs  # noqa: E402
from misc.logutil import setup_logging  # noqa: E402
from run_sample import positive_float_tuple, positive_int, str2bool  # noqa: E402
from step.predict import EVAL_SCALES, predict  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--weights', required=True, help='segmentation weights written by train_seg')
    p.add_argument('--images', required=True,
                   help='a folder of images, or a glob pattern (quote it: \'new/**/*.jpg\')')
    p.add_argument('--out', required=True, help='output folder')
    p.add_argument('--scales', default=EVAL_SCALES, type=positive_float_tuple,
                   help='inference scales (default eval_seg\'s %s; 1.0 for speed)'
                   % ','.join(map(str, EVAL_SCALES)))
    p.add_argument('--flip', default=True, type=str2bool,
                   help='average with the horizontally flipped image')
    p.add_argument('--crf', default=False, type=str2bool, help='refine with the dense CRF')
    p.add_argument('--batch_size', default=4, type=positive_int,
                   help='images of the same size per forward pass')
    p.add_argument('--device', default='auto', help="'auto', 'cpu', 'cuda', 'cuda:1', ...")
    p.add_argument('--amp', default=False, type=str2bool, help='mixed precision')
    a = p.parse_args(argv)
    setup_logging(a.out, 'predict', is_main=dist.is_main_process())
    try:
        return predict(a.images, a.weights, a.out, a.scales, a.flip, a.crf, a.batch_size,
                       a.device, a.amp)
    finally:
        release_outputs()
        dist.shutdown()


if __name__ == '__main__':
    main()
