"""train_cam: one step against the authors' run, reference SGD schedule, checkpoints,
resume, DDP under torchrun."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import REF, VOC_MINI, kill_when, make_reference_weights, run_sample_cmd
from data.loaders import ClassificationDataset
from misc.torchutils import reference_poly_sgd
from net.checkpoint import load_weights, read_state_dict
from net.resnet50_cam import CAM, Net
from pipeline.engine import Optimiser
from reference_step import (assert_within_max, check_frozen_unchanged, check_grad_norms,
                            check_optimizer_before_step, check_poly_lr_after_step,
                            fixture_batch, fixture_keys, frozen_snapshot, numpy_of,
                            reference_args)
import run_sample
from step import train_cam
from voc12.devkit import VOC12


@pytest.fixture(scope='module')
def cam_reference_weights(tmp_path_factory):
    """res50_cam.pth-layout weights of the fixtures (the authors' train_cam state dict)."""
    return make_reference_weights('cam_state_dict.json',
                                  tmp_path_factory.mktemp('weights') / 'res50_cam.pth')


def test_train_cam_step_matches_reference(cam_reference_weights, monkeypatch):
    """One step of the authors' step/train_cam.py (train_cam_step.npz), built by
    train_cam's own functions; tolerances of the fixture README, section 8."""
    ref = np.load(REF / 'train_cam_step.npz')
    source = VOC12(str(VOC_MINI))
    dataset = ClassificationDataset(source, list(ref['names']), resize_long=None, hor_flip=False,
                                    crop_size=int(ref['crop_size']), crop_method='random')
    pack = fixture_batch(dataset, ref, monkeypatch)
    np.testing.assert_array_equal(pack['img'].numpy(), ref['img'])
    np.testing.assert_array_equal(pack['label'].numpy(), ref['label'])

    args = reference_args('--cam_learning_rate', repr(float(ref['group_initial_lr'][0])),
                          '--cam_weight_decay', repr(float(ref['group_weight_decay'][0])))
    device = torch.device('cpu')
    model, optimizer, scheduler = train_cam.build_training(args, source.n_classes,
                                                           int(ref['max_step']), device)
    load_weights(model, str(cam_reference_weights))
    params = dict(model.named_parameters())
    assert list(params) == list(ref['param_names'])
    assert [n for n, p in params.items() if p.requires_grad] == list(ref['requires_grad_names'])
    assert [n for n, p in params.items() if not p.requires_grad] == list(ref['frozen_names'])
    check_optimizer_before_step(model, optimizer, ref)
    frozen = frozen_snapshot(model)

    with torch.no_grad():
        logits = model(pack['img'])
    terms = Optimiser(optimizer, scheduler, device).step(model, [pack], train_cam.batch_loss)
    np.testing.assert_allclose(terms['loss'], ref['loss'], rtol=1e-5)
    assert_within_max(logits, ref['logits'], 2e-5, 'logits')
    check_grad_norms(model, ref, rtol=2e-3)
    head = set(ref['group1_param_names'])
    for name in fixture_keys(ref, 'grad__'):
        grad, expected = params[name].grad, ref['grad__' + name]
        if name in head:
            assert_within_max(grad, expected, 1e-5, name)
        else:
            assert_within_max(grad, expected, 2e-2, name)
            assert np.linalg.norm(numpy_of(grad) - expected) <= 1e-2 * np.linalg.norm(expected)
    for name in fixture_keys(ref, 'after__'):
        after, expected = params[name], ref['after__' + name]
        if name in frozen:
            np.testing.assert_array_equal(after.detach().numpy(), expected, name)
        else:
            assert_within_max(after, expected, 1e-5 if name in head else 1e-2, name)
    check_frozen_unchanged(model, frozen)
    check_poly_lr_after_step(optimizer, ref)


def test_detach_early_stages_option_is_irnets_baseline():
    """--cam_detach_early_stages True: layer1-2 get no gradient and stay unchanged."""
    torch.manual_seed(0)
    args = reference_args('--cam_detach_early_stages', 'True')
    model, optimizer, scheduler = train_cam.build_training(args, 3, 10, torch.device('cpu'))
    frozen = frozen_snapshot(model)
    assert all(n.startswith(('resnet50.conv1.', 'resnet50.bn1.', 'resnet50.layer1.',
                             'resnet50.layer2.')) for n in frozen)
    assert len(frozen) == 3 + sum(1 for n, _ in model.named_parameters()
                                  if n.startswith(('resnet50.layer1.', 'resnet50.layer2.')))
    pack = {'img': torch.randn(2, 3, 64, 64), 'label': torch.tensor([[1., 0, 0], [0, 1, 1]])}
    Optimiser(optimizer, scheduler, torch.device('cpu')).step(model, [pack], train_cam.batch_loss)
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n], t) and params[n].grad is None for n, t in frozen.items())
    assert params['resnet50.layer3.0.conv1.weight'].grad is not None
    default = Net(3)
    assert not default.detach_early_stages
    assert default.resnet50.layer1[0].conv1.weight.requires_grad


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
    """The authors' recipe on the demo data; lr 0.01 since every stage trains and the
    random backbone diverges at lr 0.1 (the reference starts from ImageNet weights)."""
    return ['--voc12_root', str(voc_root), '--work_space', str(work_space), '--num_workers', '0',
            '--device', 'cpu', '--train_list', 'train', '--val_list', '',
            '--cam_batch_size', '4', '--cam_num_epoches', str(epochs), '--cam_crop_size', '64',
            '--cam_resize_long', '48,96', '--cam_learning_rate', '0.01',
            '--train_cam_pass', 'True'] + list(extra)


def test_train_cam_writes_weights_and_logs(tmp_path, demo_voc):
    run_sample.main(train_args(demo_voc['root'], tmp_path, epochs=1, extra=['--val_list', 'val']))
    weights = tmp_path / 'res50_cam.safetensors'
    assert weights.is_file() and (tmp_path / 'res50_cam.train_state.pt').is_file()
    log = (tmp_path / 'run.log').read_text()
    assert 'train_cam epoch 1: loss' in log and 'val loss' in log
    model = load_weights(CAM(len(VOC12.class_names)), str(weights))
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
