"""make_clims / make_cam / eval_cam through run_sample.py against the reference fixtures."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import REF, REPO, VOC_MINI, reference_ids
import run_sample

IDS = reference_ids('trainval')


def sample(work_space, *extra):
    return run_sample.main(['--voc12_root', str(VOC_MINI), '--work_space', str(work_space),
                            '--num_workers', '0', '--device', 'cpu'] + [str(e) for e in extra])


@pytest.fixture(scope='module')
def clims_cams(tmp_path_factory, clims_reference_weights):
    """make_clims with the fixture weights in the authors' layout, on every image."""
    ws = tmp_path_factory.mktemp('clims_ws')
    sample(ws, '--make_clims_pass', 'True', '--clims_weights_name', clims_reference_weights,
           '--infer_list', REF / 'voc12' / 'trainval.txt')
    return ws


@pytest.mark.parametrize('image_id', IDS)
def test_make_clims_reproduces_reference_cams(clims_cams, image_id):
    ref = np.load(REF / 'cams' / (image_id + '.npz'))
    ours = np.load(clims_cams / 'cams' / (image_id + '.npz'), allow_pickle=False)
    assert sorted(ours.files) == ['cam', 'high_res', 'keys']
    np.testing.assert_array_equal(ours['keys'], ref['keys'])
    assert ours['keys'].dtype == np.int64
    for name in ('cam', 'high_res'):
        assert ours[name].dtype == np.float32 and ours[name].shape == ref[name].shape
        np.testing.assert_allclose(ours[name], ref[name], atol=5e-5, rtol=0)


def zero_maps(cam_dir):
    """(image, class id) of every high-res CAM that is exactly zero everywhere."""
    found = set()
    for image_id in IDS:
        cams = np.load(cam_dir / (image_id + '.npz'))
        found |= {(image_id, int(k)) for k, m in zip(cams['keys'], cams['high_res'])
                  if not m.any()}
    return found


def test_all_zero_cams_stay_exactly_zero(clims_cams):
    """Maps that are all zero (relu of a negative map) stay exactly 0 after / (max + 1e-5)."""
    assert zero_maps(clims_cams / 'cams') == zero_maps(REF / 'cams')


def test_make_cam_with_the_same_weights_gives_the_same_cams(tmp_path, clims_reference_weights):
    """The baseline network (frozen BN) and the QA-CLIMS network agree in eval mode."""
    sample(tmp_path, '--make_cam_pass', 'True', '--cam_weights_name', clims_reference_weights,
           '--infer_list', 'val')
    val = reference_ids('val')
    assert sorted(os.listdir(tmp_path / 'cams')) == sorted(i + '.npz' for i in val)
    for image_id in val:
        ref = np.load(REF / 'cams' / (image_id + '.npz'))
        ours = np.load(tmp_path / 'cams' / (image_id + '.npz'))
        np.testing.assert_allclose(ours['high_res'], ref['high_res'], atol=5e-5, rtol=0)


def reference_eval_cam():
    with open(REF / 'eval_cam.json') as f:
        return json.load(f)


def reference_split(split):
    return reference_eval_cam()[split]


def nan_list(values):
    return np.array([np.nan if v is None else v for v in values], np.float64)


@pytest.mark.parametrize('split', sorted(reference_eval_cam()))
def test_eval_cam_reproduces_reference(tmp_path, split):
    """eval_cam on the reference CAM files: mIoU, per-class IoU, confusion, whole sweep."""
    shutil.copytree(REF / 'cams', tmp_path / 'cams')
    sample(tmp_path, '--eval_cam_pass', 'True', '--chainer_eval_set', split,
           '--eval_cam_best', 'True')
    ours = json.loads((tmp_path / 'eval_cam.json').read_text())
    ref = reference_split(split)
    assert ours['n_images'] == ref['n_images'] == len(reference_ids(split))
    assert ours['threshold'] == ref['cam_eval_thres']
    np.testing.assert_allclose(ours['miou'], ref['miou'], rtol=1e-9)
    n = len(ref['iou'])
    np.testing.assert_allclose(nan_list(ours['iou'][:n]), nan_list(ref['iou']), rtol=1e-9)
    assert all(v is None for v in ours['iou'][n:])
    conf = np.array(ours['confusion'])
    np.testing.assert_array_equal(conf[:n, :n], np.array(ref['confusion']))
    assert conf[n:].sum() == 0 and conf[:, n:].sum() == 0
    np.testing.assert_allclose(ours['among_predfg_bg'], ref['among_predfg_bg'], rtol=1e-9)
    np.testing.assert_allclose(np.array(ours['sweep']), np.array(ref['sweep_thres_miou']),
                               rtol=1e-9)
    early = ref['original_early_stop_best']
    assert ours['original_early_stop_best']['threshold'] == early['thres']
    np.testing.assert_allclose(ours['original_early_stop_best']['miou'], early['miou'], rtol=1e-9)
    sweep = np.array(ref['sweep_thres_miou'])
    assert ours['best']['miou'] == pytest.approx(sweep[:, 1].max())
    names = list(ref['iou_by_class'])
    assert list(ours['iou_by_class'])[:len(names)] == names
    np.testing.assert_allclose(nan_list([ours['iou_by_class'][c] for c in names]),
                               nan_list(ref['iou_by_class'].values()), rtol=1e-9)


def test_eval_cam_on_our_cams_gives_reference_miou(clims_cams):
    sample(clims_cams, '--eval_cam_pass', 'True', '--chainer_eval_set', 'trainval')
    ours = json.loads((clims_cams / 'eval_cam.json').read_text())
    assert ours['miou'] == pytest.approx(reference_split('trainval')['miou'], abs=2e-4)


def test_eval_cam_names_missing_cam_files(tmp_path):
    (tmp_path / 'cams').mkdir()
    missing = '%d of %d CAM files of trainval are missing' % (len(IDS), len(IDS))
    with pytest.raises(FileNotFoundError, match=missing):
        sample(tmp_path, '--eval_cam_pass', 'True', '--chainer_eval_set', 'trainval')


def test_run_voc12_qa_clims_script_reproduces_reference_train_miou(tmp_path,
                                                                  clims_reference_weights):
    env = dict(os.environ, VOC12_ROOT=str(VOC_MINI), WORK_SPACE=str(tmp_path), SKIP_TRAIN='1',
               CLIMS_WEIGHTS_NAME=str(clims_reference_weights), NUM_WORKERS='0',
               PYTHON=sys.executable, INFER_LIST='train')
    subprocess.run(['bash', str(REPO / 'run_voc12_qa_clims.sh')], env=env, check=True,
                   capture_output=True)
    ours = json.loads((tmp_path / 'eval_cam.json').read_text())
    ref = reference_split('train')
    assert ours['n_images'] == ref['n_images'] == len(reference_ids('train'))
    assert ours['miou'] == pytest.approx(ref['miou'], abs=2e-4)
    assert ours['original_early_stop_best']['threshold'] == ref['original_early_stop_best']['thres']
