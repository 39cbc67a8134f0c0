"""Random walk (sparse) and make_sem_seg against the reference fixtures."""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REF, REPO, VOC_MINI, has_file_ending, kill_when, run_sample_cmd
import run_sample
from step.make_sem_seg_labels import pseudo_label, pseudo_labels, random_walk_scores
from voc12.devkit import VOC12
from wsss.path_index import PathIndex, affinity_labels
from wsss.random_walk import padded_path_affinity, propagate_to_edge, sparse_affinity, \
    walk_matrix

# The fixtures' make_sem_seg ran with beta 10, exp_times 8 and sem_seg_bg_thres 0.25
# (reference/README.md, section 3d).
BETA, EXP_TIMES, BG_THRES = 10, 8, 0.25


def cases(npz_path, key):
    """The case numbers k of an npz holding ``case{k}_<key>`` arrays."""
    with np.load(npz_path) as f:
        return sorted(int(m.group(1)) for m in map(re.compile(r'case(\d+)_%s$' % key).match,
                                                   f.files) if m)


def stems(folder, suffix):
    return sorted(n[:-len(suffix)] for n in os.listdir(folder) if n.endswith(suffix))


SEM_SEG_IDS = stems(REF / 'sem_seg', '.png')


def all_zero_cam_ids():
    """Images whose strided CAMs are all zero, with the class the reference labels them with."""
    out = {}
    for image_id in SEM_SEG_IDS:
        with np.load(REF / 'cams' / (image_id + '.npz')) as cams:
            if cams['keys'].size and not cams['cam'].any():
                out[image_id] = int(cams['keys'][0]) + 1
    return out


@pytest.mark.parametrize('case', cases(REF / 'path_index.npz', 'radius_size'))
def test_path_index_matches_reference(case):
    ref = np.load(REF / 'path_index.npz')
    radius, h, w, radius_floor = ref['case%d_radius_size' % case]
    index = PathIndex(int(radius), (int(h), int(w)))
    assert index.radius_floor == radius_floor
    np.testing.assert_array_equal(index.src_indices, ref['case%d_src_indices' % case])
    np.testing.assert_array_equal(index.dst_indices, ref['case%d_dst_indices' % case])
    np.testing.assert_array_equal(index.search_dst, ref['case%d_search_dst' % case])
    assert len(index.path_indices) == int(ref['case%d_n_path_lengths' % case])
    for k, indices in enumerate(index.path_indices):
        np.testing.assert_array_equal(indices, ref['case%d_path_indices%d' % (case, k)])
        np.testing.assert_array_equal(index.search_paths[k], ref['case%d_search_paths%d' % (case, k)])


def test_affinity_labels_match_reference():
    ref = np.load(REF / 'path_index.npz')
    radius, h, w, _ = ref['case%d_radius_size' % int(ref['aff_case'])]
    index = PathIndex(int(radius), (int(h), int(w)))
    ours = affinity_labels(ref['aff_label_map'], index.src_indices, index.dst_indices,
                           VOC12(str(VOC_MINI)).n_classes + 1)    # the VOC dataloader's count
    for array, key in zip(ours, ('aff_bg_pos', 'aff_fg_pos', 'aff_neg')):
        assert array.dtype == np.float32
        np.testing.assert_array_equal(array, ref[key])


def test_affinity_and_transition_intermediates():
    ref = np.load(REF / 'random_walk.npz')
    edge = torch.from_numpy(ref['case0_edge'])
    _, _, aff = padded_path_affinity(edge, 5)
    np.testing.assert_array_equal(aff.numpy(), ref['case0_sparse_aff'].reshape(aff.shape))
    np.testing.assert_array_equal(sparse_affinity(edge, 5).to_dense().numpy(),
                                  ref['case0_dense_aff'])
    trans = walk_matrix(edge.double(), 5, 10).to_dense().t()
    squared = trans
    for _ in range(int(ref['case0_params'][5])):
        squared = squared @ squared
    np.testing.assert_allclose(squared.numpy(), ref['case0_trans_mat'], rtol=1e-3,
                               atol=1e-4 * np.abs(ref['case0_trans_mat']).max())


@pytest.mark.parametrize('case', cases(REF / 'random_walk.npz', 'params'))
def test_sparse_random_walk_matches_reference(case):
    ref = np.load(REF / 'random_walk.npz')
    _, _, _, radius, beta, exp_times = ref['case%d_params' % case]
    rw = propagate_to_edge(torch.from_numpy(ref['case%d_cams' % case]),
                           torch.from_numpy(ref['case%d_edge' % case]), beta=float(beta),
                           exp_times=int(exp_times), radius=int(radius)).numpy()
    expected = ref['case%d_rw' % case]
    assert rw.shape == expected.shape and rw.dtype == np.float32
    scale = np.abs(expected).max()
    np.testing.assert_allclose(rw, expected, rtol=0, atol=max(1e-3 * scale, 1e-4))
    exact = ref['case%d_rw_float64' % case]
    assert np.abs(rw - exact).max() <= 1e-6 * np.abs(exact).max()


def test_transition_matrix_is_sparse_and_linear_in_pixels():
    for h, w in ((16, 16), (32, 64)):
        aff = sparse_affinity(torch.rand(1, h, w), 5)
        assert aff.layout == torch.sparse_csr and aff._nnz() <= h * w * (2 * 34 + 1)


@pytest.mark.parametrize('image_id', stems(REF / 'rw', '.npz'))
def test_random_walk_scores_match_reference(image_id):
    ref = np.load(REF / 'rw' / (image_id + '.npz'))
    rw = propagate_to_edge(torch.from_numpy(ref['cam']), torch.from_numpy(ref['edge']))
    np.testing.assert_allclose(rw.numpy(), ref['rw'], rtol=0,
                               atol=max(1e-3 * np.abs(ref['rw']).max(), 1e-4))
    size = ref['rw_up'].shape[1:]
    scores = random_walk_scores(torch.from_numpy(ref['cam']), torch.from_numpy(ref['edge']),
                                size, BETA, EXP_TIMES, BG_THRES)
    np.testing.assert_allclose(scores[1:].numpy(), ref['rw_up'], atol=2e-4, rtol=0)


def test_pseudo_labels_at_several_background_thresholds_equal_one_walk_each():
    image_id = stems(REF / 'rw', '.npz')[0]
    ref = np.load(REF / 'rw' / (image_id + '.npz'))
    cams, edge = torch.from_numpy(ref['cam']), torch.from_numpy(ref['edge'])
    keys = np.arange(len(cams))
    size = ref['rw_up'].shape[1:]
    thresholds = [0.05, BG_THRES, 0.6]
    labels = pseudo_labels(cams, keys, edge, size, BETA, 2, thresholds)
    for bg_thres, label in zip(thresholds, labels):
        walk = random_walk_scores(cams, edge, size, BETA, 2, bg_thres)
        np.testing.assert_array_equal(label, torch.argmax(walk, dim=0).numpy().astype(np.uint8))
        args = argparse.Namespace(beta=BETA, exp_times=2, sem_seg_bg_thres=bg_thres)
        np.testing.assert_array_equal(label, pseudo_label(cams, keys, edge, size, args))
    assert len({label.tobytes() for label in labels}) == len(thresholds)
    empty = pseudo_labels(cams[:0], keys[:0], edge, size, BETA, 2, thresholds)
    assert [label.tolist() for label in empty] == [np.zeros(size, np.uint8).tolist()] * len(
        thresholds)


def sem_seg_args(work_space, weights, *extra):
    args = ['--voc12_root', VOC_MINI, '--work_space', work_space, '--device', 'cpu',
            '--num_workers', '0', '--infer_list', 'trainval', '--irn_weights_name', weights,
            '--beta', BETA, '--exp_times', EXP_TIMES, '--sem_seg_bg_thres', BG_THRES,
            '--make_sem_seg_pass', 'True'] + list(extra)
    return [str(a) for a in args]


def test_make_sem_seg_reproduces_reference_pngs(tmp_path, irn_reference_weights):
    shutil.copytree(REF / 'cams', tmp_path / 'cams')
    run_sample.main(sem_seg_args(tmp_path, irn_reference_weights, '--sem_seg_color', 'True'))
    total = agree = 0
    for image_id in SEM_SEG_IDS:
        ours = Image.open(tmp_path / 'sem_seg' / (image_id + '.png'))
        ref = np.asarray(Image.open(REF / 'sem_seg' / (image_id + '.png')))
        assert ours.mode == 'L'
        total += ref.size
        agree += int((np.asarray(ours) == ref).sum())
        color = Image.open(tmp_path / 'sem_seg_color' / (image_id + '.png'))
        assert color.mode == 'P'
        np.testing.assert_array_equal(np.asarray(color), np.asarray(ours))
    assert agree / total >= 0.999
    # an all-zero-CAM image is labelled with its first class (NaN argmax, as the reference)
    for image_id, label in all_zero_cam_ids().items():
        assert set(np.unique(np.asarray(Image.open(tmp_path / 'sem_seg' / (image_id + '.png'))))) \
            == {label}


def test_killed_make_sem_seg_resumes_to_identical_pngs(tmp_path, irn_reference_weights):
    full, killed = tmp_path / 'full', tmp_path / 'killed'
    for ws in (full, killed):
        shutil.copytree(REF / 'cams', ws / 'cams')
    subprocess.run(run_sample_cmd(*sem_seg_args(full, irn_reference_weights)), check=True,
                   capture_output=True)
    out = killed / 'sem_seg'
    kill_when(run_sample_cmd(*sem_seg_args(killed, irn_reference_weights)),
              lambda: has_file_ending(out, '.png'), timeout=120)
    assert len([n for n in os.listdir(out) if n.endswith('.png')]) < len(SEM_SEG_IDS)
    subprocess.run(run_sample_cmd(*sem_seg_args(killed, irn_reference_weights)), check=True,
                   capture_output=True)
    assert sorted(os.listdir(out)) == sorted(os.listdir(full / 'sem_seg'))
    for name in os.listdir(out):
        assert (out / name).read_bytes() == (full / 'sem_seg' / name).read_bytes()


def test_run_voc12_sem_seg_script(tmp_path):
    shutil.copytree(REF / 'cams', tmp_path / 'cams')
    env = dict(os.environ, VOC12_ROOT=str(VOC_MINI), WORK_SPACE=str(tmp_path),
               PYTHON=sys.executable, NUM_WORKERS='0', TRAIN_LIST='trainval',
               INFER_LIST='trainval', CHAINER_EVAL_SET='trainval', IRN_CROP_SIZE='96', IRN_BATCH_SIZE='2',
               IRN_NUM_EPOCHES='1', OMP_NUM_THREADS='2')
    subprocess.run(['bash', str(REPO / 'run_voc12_sem_seg.sh')], env=env, check=True,
                   capture_output=True)
    trainval = (VOC_MINI / 'ImageSets' / 'Segmentation' / 'trainval.txt').read_text().split()
    for name in trainval:
        ours = np.asarray(Image.open(tmp_path / 'ir_label' / (name + '.png')))
        np.testing.assert_array_equal(
            ours, np.asarray(Image.open(REF / 'ir_label_default' / (name + '.png'))))
    result = json.loads((tmp_path / 'eval_sem_seg.json').read_text())
    assert result['n_images'] == len(trainval) and 0 <= result['miou'] <= 1
    assert len(os.listdir(tmp_path / 'sem_seg_color')) == len(trainval)
