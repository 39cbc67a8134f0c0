"""Segmentation network (DeepLabV2 / V3): shapes, ASPP, training, evaluation, DDP."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader

import run_sample
from conftest import REF, VOC_MINI, run_sample_cmd
from data.loaders import SegmentationTrainDataset
from net.checkpoint import save_weights
from net.deeplab import DeepLabV2, build_segmentation_model
from net.resnet50 import estimate_batchnorm_statistics
from voc12.devkit import VOC12


def test_deeplabv2_shapes_and_aspp_sum():
    model = DeepLabV2(21).eval()
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        feats = model.features(x)
        assert feats.shape == (1, 2048, 8, 10)                      # output stride 8
        summed = model.aspp(feats)
        branches = [conv(feats) for conv in model.aspp.branches]
        torch.testing.assert_close(summed, sum(branches))
        assert [c.dilation[0] for c in model.aspp.branches] == [6, 12, 18, 24]
        assert model(x).shape == (1, 21, 64, 80)
    v3 = build_segmentation_model('deeplabv3', 21).eval()
    with torch.no_grad():
        assert v3(x).shape == (1, 21, 64, 80)


def test_backbone_weights_file(tmp_path):
    import torchvision
    reference = torchvision.models.resnet101(weights=None)
    path = tmp_path / 'resnet101-63fe2227.pth'
    torch.save(reference.state_dict(), path)
    model = build_segmentation_model('deeplabv2', 21, str(path))
    assert torch.equal(model.backbone.layer3[5].conv2.weight, reference.layer3[5].conv2.weight)
    with pytest.raises(FileNotFoundError, match='absent.pth'):
        build_segmentation_model('deeplabv2', 21, str(tmp_path / 'absent.pth'))


def test_a_few_steps_lower_the_loss():
    torch.manual_seed(0)
    source = VOC12(str(VOC_MINI))
    dataset = SegmentationTrainDataset(source, source.ids('trainval'), None, 64)
    model = DeepLabV2(21)
    estimate_batchnorm_statistics(model, (p['img'] for p in DataLoader(dataset, batch_size=6)))
    backbone, head = model.parameter_groups()
    optimizer = torch.optim.SGD([{'params': backbone, 'lr': 2.5e-4},
                                 {'params': head, 'lr': 2.5e-3}], lr=2.5e-4, momentum=0.9)
    batch = next(iter(DataLoader(dataset, batch_size=2)))
    losses = []
    for _ in range(6):
        loss = F.cross_entropy(model(batch['img']), batch['label'], ignore_index=255)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def background_only_weights(path):
    """A DeepLabV2 that predicts background everywhere (zero ASPP, background bias)."""
    model = DeepLabV2(21)
    with torch.no_grad():
        for conv in model.aspp.branches:
            conv.weight.zero_()
            conv.bias.zero_()
        model.aspp.branches[0].bias[0] = 1.0
    save_weights(model, str(path))


def test_evaluation_of_known_predictions(tmp_path):
    background_only_weights(tmp_path / 'seg.safetensors')
    run_sample.main(['--voc12_root', str(VOC_MINI), '--work_space', str(tmp_path), '--device',
                     'cpu', '--seg_weights_name', 'seg.safetensors', '--seg_eval_set', 'val',
                     '--seg_eval_scales', '0.5,1.0', '--seg_crf', 'True',
                     '--seg_submission', 'True', '--eval_seg_pass', 'True'])
    result = json.loads((tmp_path / 'eval_seg.json').read_text())
    source = VOC12(str(VOC_MINI))
    gts = [source.read_mask(i) for i in ('2009_005118', '2012_004233')]
    valid = sum(int((g != 255).sum()) for g in gts)
    background = sum(int((g == 0).sum()) for g in gts)
    present = sorted(set(np.unique(np.concatenate([g.ravel() for g in gts]))) - {255})
    expected = (background / valid) / len(present)                  # other classes: IoU 0
    for variant in ('plain', 'crf'):
        assert result[variant]['miou'] == pytest.approx(expected, rel=1e-9)
    submission = tmp_path / 'results' / 'VOC2012' / 'Segmentation' / 'comp6_test_cls'
    assert sorted(os.listdir(submission)) == ['2009_005118.png', '2012_004233.png']
    png = Image.open(submission / '2009_005118.png')
    assert png.mode == 'P' and not np.asarray(png).any()


def seg_args(work_space, *extra):
    return ['--voc12_root', str(VOC_MINI), '--work_space', str(work_space), '--device', 'cpu',
            '--num_workers', '0', '--seg_train_list', 'trainval', '--seg_batch_size', '2',
            '--seg_crop_size', '64', '--seg_num_iters', '4', '--seg_grad_clip', '10',
            '--train_seg_pass', 'True'] + list(extra)


def test_train_seg_on_pseudo_masks_saves_and_resumes(tmp_path):
    shutil.copytree(REF / 'sem_seg', tmp_path / 'sem_seg')
    run_sample.main(seg_args(tmp_path))
    assert (tmp_path / 'deeplab_seg.safetensors').is_file()
    state = torch.load(tmp_path / 'deeplab_seg.train_state.pt', weights_only=True)
    assert state['scheduler']['last_epoch'] == 4
    log = (tmp_path / 'run.log').read_text()
    assert 'labels %s' % (tmp_path / 'sem_seg') in log
    run_sample.main(seg_args(tmp_path))                      # already done: resumes at the end
    assert 'resuming at iteration 4' in (tmp_path / 'run.log').read_text()


def test_train_seg_with_torchrun_gloo(tmp_path):
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
           '--master_port', '29527'] + run_sample_cmd(*seg_args(tmp_path, '--seg_label_dir',
                                                                  'gt'))[1:]
    result = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS='1'), capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert '(1 per process)' in (tmp_path / 'run.log').read_text()
    assert (tmp_path / 'deeplab_seg.safetensors').is_file()
