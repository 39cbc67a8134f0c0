"""cam_to_ir_label through run_sample.py against the reference PNGs."""
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import REF, VOC_MINI
import run_sample


@pytest.mark.parametrize('folder, bg_thres', [('ir_label', 0.05), ('ir_label_default', None)])
def test_confident_regions_reproduce_reference(tmp_path, folder, bg_thres):
    shutil.copytree(REF / 'cams', tmp_path / 'cams')
    argv = ['--voc12_root', str(VOC_MINI), '--work_space', str(tmp_path), '--device', 'cpu',
            '--train_list', 'trainval', '--num_workers', '2', '--cam_to_ir_label_pass', 'True']
    if bg_thres is not None:
        argv += ['--conf_bg_thres', str(bg_thres)]
    run_sample.main(argv)
    names = sorted(os.listdir(REF / folder))
    assert sorted(os.listdir(tmp_path / 'ir_label')) == names
    for name in names:
        ours = Image.open(tmp_path / 'ir_label' / name)
        ref = Image.open(REF / folder / name)
        assert ours.mode == ref.mode == 'L'
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(ref))


def test_existing_labels_are_skipped(tmp_path):
    train = (VOC_MINI / 'ImageSets' / 'Segmentation' / 'train.txt').read_text().split()
    shutil.copytree(REF / 'cams', tmp_path / 'cams')
    (tmp_path / 'ir_label').mkdir()
    marker = tmp_path / 'ir_label' / (train[0] + '.png')
    Image.new('L', (3, 2), 7).save(marker)          # a readable PNG no run would write
    kept = marker.read_bytes()
    run_sample.main(['--voc12_root', str(VOC_MINI), '--work_space', str(tmp_path),
                     '--train_list', 'train', '--num_workers', '1',
                     '--cam_to_ir_label_pass', 'True'])
    assert marker.read_bytes() == kept
    assert sorted(os.listdir(tmp_path / 'ir_label')) == sorted(i + '.png' for i in train)
