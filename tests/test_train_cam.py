"""train_cam: reference SGD schedule, checkpoints, resume, DDP under torchrun."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import run_sample
from conftest import REF, kill_when, run_sample_cmd
from misc.torchutils import reference_poly_sgd
from net.checkpoint import load_weights, read_state_dict
from net.resnet50_cam import CAM


def test_reference_poly_sgd_matches_polyoptimizer_fixture():
    ref = np.load(REF / 'optimizer.npz')
    p1 = torch.nn.Parameter(torch.from_numpy(ref['p1_init']))
    p2 = torch.nn.Parameter(torch.from_numpy(ref['p2_init']))
    optimizer, scheduler = reference_poly_sgd(
        [{'params': [p1], 'lr': 0.01}, {'params': [p2], 'lr': 0.1}],
        weight_decay=1e-4, max_step=int(ref['max_step']))
    for group, momentum, wd in zip(optimizer.param_groups, ref['group_momentum'],
                                   ref['group_weight_decay']):
        assert group['momentum'] == pytest.approx(momentum)
        assert group['weight_decay'] == pytest.approx(wd)
        assert group['dampening'] == 0 and not group['nesterov']
    used = []
    for _ in range(len(ref['lr_per_step'])):
        used.append([g['lr'] for g in optimizer.param_groups])
        optimizer.zero_grad()
        (p1.pow(2).sum() + p2.pow(3).sum()).backward()
        optimizer.step()
        scheduler.step()
    np.testing.assert_allclose(np.array(used), ref['lr_per_step'], rtol=1e-12)


def test_fix_momentum_quirk_option():
    p = torch.nn.Parameter(torch.zeros(2))
    optimizer, _ = reference_poly_sgd([{'params': [p], 'lr': 0.1}], 1e-4, 10,
                                      fix_momentum_quirk=True)
    assert optimizer.param_groups[0]['momentum'] == 0.9


def train_args(voc_root, work_space, epochs=2, extra=()):
    return ['--voc12_root', str(voc_root), '--work_space', str(work_space), '--num_workers', '0',
            '--device', 'cpu', '--train_list', 'train', '--val_list', '',
            '--cam_batch_size', '4', '--cam_num_epoches', str(epochs), '--cam_crop_size', '64',
            '--cam_resize_long', '48,96', '--train_cam_pass', 'True'] + list(extra)


def test_train_cam_writes_weights_and_logs(tmp_path, demo_voc):
    run_sample.main(train_args(demo_voc['root'], tmp_path, epochs=1, extra=['--val_list', 'val']))
    weights = tmp_path / 'res50_cam.safetensors'
    assert weights.is_file() and (tmp_path / 'res50_cam.train_state.pt').is_file()
    log = (tmp_path / 'run.log').read_text()
    assert 'train_cam epoch 1: last loss' in log and 'val loss' in log
    model = load_weights(CAM(), str(weights))
    assert torch.isfinite(model.classifier.weight).all()


def test_killed_training_resumes_to_the_same_weights(tmp_path, demo_voc):
    full = tmp_path / 'full'
    cmd = run_sample_cmd(*train_args(demo_voc['root'], full, epochs=3))
    subprocess.run(cmd, check=True, capture_output=True)
    killed = tmp_path / 'killed'
    cmd = run_sample_cmd(*train_args(demo_voc['root'], killed, epochs=3))
    state = killed / 'res50_cam.train_state.pt'
    kill_when(cmd, state.exists)
    assert state.exists() and not (killed / 'res50_cam.safetensors').exists()
    result = subprocess.run(cmd, check=True, capture_output=True, text=True)
    assert 'resuming after epoch' in result.stdout
    a = read_state_dict(str(full / 'res50_cam.safetensors'))
    b = read_state_dict(str(killed / 'res50_cam.safetensors'))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_ddp_training_with_torchrun_gloo(tmp_path, demo_voc):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
           '--master_port', '29517'] + run_sample_cmd(
               *train_args(demo_voc['root'], tmp_path, epochs=1))[1:]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert '(2 per process)' in (tmp_path / 'run.log').read_text()
    run_sample.main(['--voc12_root', demo_voc['root'], '--work_space', str(tmp_path),
                     '--num_workers', '0', '--device', 'cpu', '--infer_list', 'val',
                     '--cam_scales', '1.0', '--make_cam_pass', 'True'])
    val = demo_voc['val']
    assert sorted(os.listdir(tmp_path / 'cams')) == sorted(i + '.npz' for i in val)
