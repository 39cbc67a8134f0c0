"""train_irn: loss terms, checkpoints, backbone from a CAM checkpoint, determinism, DDP."""
import os
import shutil
import subprocess
import sys

import pytest
import torch

import run_sample
from conftest import REF, VOC_MINI, run_sample_cmd
from misc.path_index import PathIndex
from net.checkpoint import load_weights, read_state_dict
from net.resnet50_irn import IRNet, IRNetLoss, irn_total_loss


def irn_args(work_space, epochs=1, extra=()):
    return ['--voc12_root', str(VOC_MINI), '--work_space', str(work_space), '--device', 'cpu',
            '--num_workers', '0', '--train_list', 'trainval', '--infer_list', 'trainval',
            '--irn_crop_size', '96', '--irn_batch_size', '2', '--irn_num_epoches', str(epochs),
            '--train_irn_pass', 'True'] + list(extra)


def with_ir_labels(path):
    shutil.copytree(REF / 'ir_label', path / 'ir_label')
    return path


def test_loss_terms_are_finite_and_weighted_by_labels():
    index = PathIndex(radius=10, default_size=(24, 24))
    model = IRNetLoss(IRNet(), index)
    losses = model(torch.zeros(2, 3, 96, 96))
    n_dirs, n_src = index.dst_indices.shape
    assert losses[0].shape == (2, n_dirs, n_src) and losses[2].shape == (2, 2, n_dirs, n_src)
    zeros = torch.zeros(2, n_dirs, n_src)
    ones = torch.ones(2, n_dirs, n_src)
    terms = irn_total_loss(losses, ones, zeros, zeros)
    assert torch.isfinite(terms['loss']) and terms['neg'] == 0 and terms['dp_fg'] == 0
    assert terms['pos'] > 0
    assert 'path_indices0' not in model.state_dict()      # derived buffers are not saved
    with pytest.raises(ValueError, match='too small for pairs within radius 10'):
        PathIndex(radius=10, default_size=(16, 16))


def test_train_irn_loads_cam_backbone_and_is_deterministic(tmp_path, clims_reference_weights):
    ws = with_ir_labels(tmp_path / 'a')
    run_sample.main(irn_args(ws, epochs=2, extra=['--irn_backbone_weights',
                                                  str(clims_reference_weights)]))
    weights = ws / 'res50_irn.safetensors'
    irnet = load_weights(IRNet(), str(weights))
    backbone = torch.load(clims_reference_weights, weights_only=True)
    assert torch.equal(irnet.resnet50.layer1[0].conv1.weight,
                       backbone['resnet50.layer1.0.conv1.weight'])
    assert torch.any(irnet.mean_shift.running_mean != 0)
    # a second run with the same seed ends with the same weights and a complete state
    ws2 = with_ir_labels(tmp_path / 'b')
    run_sample.main(irn_args(ws2, epochs=2, extra=['--irn_backbone_weights',
                                                   str(clims_reference_weights)]))
    state = torch.load(ws2 / 'res50_irn.train_state.pt', weights_only=True)
    assert state['epochs_done'] == 2
    a, b = read_state_dict(str(weights)), read_state_dict(str(ws2 / 'res50_irn.safetensors'))
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_train_irn_with_torchrun_gloo(tmp_path):
    ws = with_ir_labels(tmp_path)
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
           '--master_port', '29519'] + run_sample_cmd(*irn_args(ws))[1:]
    result = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS='1'), capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert '(1 per process)' in (ws / 'run.log').read_text()
    load_weights(IRNet(), str(ws / 'res50_irn.safetensors'))
