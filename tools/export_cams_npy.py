"""Export our CAM files to the reference ``.npy`` layout read by other WSSS code.

    python tools/export_cams_npy.py --cam_dir work_space/cams --out_dir work_space/cams_npy

Each ``<id>.npz`` (keys, cam, high_res) becomes ``<id>.npy``: ``np.save`` of the
dict ``{"keys": torch.LongTensor, "cam": torch.FloatTensor, "high_res": np.ndarray}``
exactly as the reference make_cam writes it (a pickle: readers need
``allow_pickle=True`` and torch importable; this project's stages read such
files back with ``--import_reference_cams True``). Existing outputs are
skipped.
"""
import argparse
import io
import os
import sys

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from misc.io import atomic_write, per_image_file  # noqa: E402
from wsss.cam import CamFiles  # noqa: E402


def reference_cam_dict(cams):
    """The reference's in-memory CAM record of one image."""
    return {'keys': torch.from_numpy(cams['keys']).long(),
            'cam': torch.from_numpy(cams['cam']).float(),
            'high_res': cams['high_res']}


def export_cams(cam_dir, out_dir):
    """Convert every ``.npz`` of ``cam_dir``; returns the number written."""
    cam_files = CamFiles(cam_dir)
    names = sorted(n[:-len(cam_files.suffix)] for n in os.listdir(cam_dir)
                   if n.endswith(cam_files.suffix))
    if not names:
        raise FileNotFoundError('no CAM .npz files in %s' % cam_dir)
    written = 0
    for name in tqdm(names, desc='export', dynamic_ncols=True):
        target = per_image_file(out_dir, name, '.npy')
        if os.path.isfile(target):
            continue
        cams = cam_files.load(name)
        buf = io.BytesIO()
        np.save(buf, reference_cam_dict(cams), allow_pickle=True)
        with atomic_write(target) as f:
            f.write(buf.getvalue())
        written += 1
    return written


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--cam_dir', required=True)
    p.add_argument('--out_dir', required=True)
    a = p.parse_args(argv)
    print('wrote %d files to %s' % (export_cams(a.cam_dir, a.out_dir), a.out_dir))


if __name__ == '__main__':
    main()
