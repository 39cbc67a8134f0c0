"""eval_sem_seg through run_sample.py against the reference JSON."""
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import REF, VOC_MINI
import run_sample


REFERENCE = json.loads((REF / 'eval_sem_seg.json').read_text())


def nan_list(values):
    return np.array([np.nan if v is None else v for v in values], np.float64)


@pytest.mark.parametrize('split', sorted(REFERENCE))
def test_eval_sem_seg_reproduces_reference(tmp_path, split):
    shutil.copytree(REF / 'sem_seg', tmp_path / 'sem_seg')
    run_sample.main(['--voc12_root', str(VOC_MINI), '--work_space', str(tmp_path),
                     '--chainer_eval_set', split, '--eval_sem_seg_pass', 'True'])
    ours = json.loads((tmp_path / 'eval_sem_seg.json').read_text())
    ref = REFERENCE[split]
    assert ours['miou'] == pytest.approx(ref['miou'], rel=1e-9)
    n = len(ref['iou'])
    for key in ('iou', 'fp', 'fn'):
        np.testing.assert_allclose(nan_list(ours[key][:n]), nan_list(ref[key]), rtol=1e-9)
    np.testing.assert_allclose(ours['printed_fp0_fn0'], ref['printed_fp0_fn0'], rtol=1e-9)
    assert ours['printed_mean_fp_fn_fg'] == ref['printed_mean_fp_fn_fg']
    conf = np.array(ours['confusion'])
    np.testing.assert_array_equal(conf[:n, :n], np.array(ref['confusion']))


def test_void_in_prediction_counts_as_background(tmp_path):
    shutil.copytree(REF / 'sem_seg', tmp_path / 'sem_seg')
    changed = 0
    for path in sorted((tmp_path / 'sem_seg').glob('*.png')):
        pred = np.asarray(Image.open(path)).copy()
        changed += int((pred == 0).sum())
        pred[pred == 0] = 255
        Image.fromarray(pred).save(path)
    assert changed > 0
    run_sample.main(['--voc12_root', str(VOC_MINI), '--work_space', str(tmp_path),
                     '--chainer_eval_set', 'trainval', '--eval_sem_seg_pass', 'True'])
    ours = json.loads((tmp_path / 'eval_sem_seg.json').read_text())
    ref = REFERENCE['trainval']
    assert ours['miou'] == pytest.approx(ref['miou'], rel=1e-9)
    n = len(ref['confusion'])
    np.testing.assert_array_equal(np.array(ours['confusion'])[:n, :n], ref['confusion'])


def test_missing_prediction_is_named(tmp_path):
    (tmp_path / 'sem_seg').mkdir()
    with pytest.raises(FileNotFoundError, match='pseudo masks are missing'):
        run_sample.main(['--voc12_root', str(VOC_MINI), '--work_space', str(tmp_path),
                         '--chainer_eval_set', 'val', '--eval_sem_seg_pass', 'True'])
