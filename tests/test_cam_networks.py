"""The --cam_network registry (net/registry.py): a backbone registered here, a
two-stage conv net with the CamBackbone interface, runs train_cam -> make_cam
through the real steps; the CAMs are those of its own stride."""
import os

import numpy as np
import pytest
import torch
from torch import nn

from conftest import VOC_MINI
from data.loaders import multiscale_inputs
from misc.io import load_npz
from net.backbone import CamBackbone
from net.checkpoint import load_weights, read_state_dict
from net.registry import CAM_NETWORKS, RESNET50, CamNetwork, cam_network
import run_sample
from voc12.devkit import VOC12
from wsss.cam import present_class_cams

SCALES = (1.0, 0.5)


def conv_block(in_ch, out_ch, norm_layer):
    return [nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1, bias=False), norm_layer(out_ch),
            nn.ReLU(inplace=True)]


class TwoStageNet(CamBackbone):
    """Early stage: two stride-2 convolutions (the first one the stem); late stage: one."""

    feature_dim = 12
    stride = 8

    def __init__(self, norm_layer):
        super().__init__()
        self.early = nn.Sequential(*conv_block(3, 6, norm_layer), *conv_block(6, 8, norm_layer))
        self.late = nn.Sequential(*conv_block(8, self.feature_dim, norm_layer))

    def forward_early(self, x):
        return self.early(x)

    def forward_late(self, x):
        return self.late(x)

    def stem_parameters(self):
        return list(self.early[0].parameters()) + list(self.early[1].parameters())

    def early_modules(self):
        return [self.early]

    def load_imagenet_weights(self, path):
        self.load_state_dict(torch.load(path, weights_only=True))


TWO_STAGE = CamNetwork('two_stage', lambda: TwoStageNet, aliases=('net.two_stage_cam',))


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(CAM_NETWORKS, TWO_STAGE.name, TWO_STAGE)
    return TWO_STAGE


def two_stage_args(work_space, *extra):
    return ['--voc12_root', str(VOC_MINI), '--work_space', str(work_space), '--num_workers', '0',
            '--device', 'cpu', '--cam_network', 'net.two_stage_cam', '--train_list', 'train',
            '--val_list', '', '--cam_batch_size', '2', '--cam_num_epoches', '2',
            '--cam_crop_size', '64', '--cam_resize_long', '48,96', '--cam_learning_rate', '0.01',
            '--infer_list', 'train', '--cam_scales', ','.join(map(str, SCALES))] + list(extra)


def expected_cams(model, source, image_id):
    """keys, cam, high_res of make_cam's recipe, fused at the registered backbone's stride."""
    img = source.read_image(image_id)
    with torch.no_grad():
        outputs = [model(pair) for pair in multiscale_inputs(img, SCALES)]
    return present_class_cams(outputs, img.shape[:2],
                              torch.from_numpy(source.image_labels(image_id)), TwoStageNet.stride)


def test_a_registered_backbone_trains_and_makes_cams_through_the_steps(tmp_path, registered):
    run_sample.main(two_stage_args(tmp_path, '--train_cam_pass', 'True', '--make_cam_pass',
                                   'True'))
    source = VOC12(str(VOC_MINI))
    weights = tmp_path / 'res50_cam.safetensors'
    state = read_state_dict(str(weights))
    baseline = registered.baseline(source.n_classes)
    assert sorted(state) == sorted(baseline.state_dict())
    assert all(key.startswith(('two_stage.', 'classifier.')) for key in state)
    assert state['classifier.weight'].shape == (source.n_classes, TwoStageNet.feature_dim, 1, 1)
    assert [n for n, p in baseline.named_parameters() if not p.requires_grad] == [
        'two_stage.early.0.weight', 'two_stage.early.1.weight', 'two_stage.early.1.bias']

    model = load_weights(registered.cam(source.n_classes), str(weights)).eval()
    ids = source.ids('train')
    assert sorted(os.listdir(tmp_path / 'cams')) == sorted(i + '.npz' for i in ids)
    for image_id in ids:
        ours = load_npz(str(tmp_path / 'cams' / (image_id + '.npz')))
        keys, cam, high_res = expected_cams(model, source, image_id)
        np.testing.assert_array_equal(ours['keys'], keys)
        np.testing.assert_allclose(ours['cam'], cam, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ours['high_res'], high_res, rtol=1e-5, atol=1e-6)


def test_the_crop_minimum_and_feature_dim_follow_the_registered_backbone(registered):
    parser = run_sample.build_parser()
    low = parser.parse_args(['--cam_network', 'two_stage', '--cam_crop_size',
                             str(TwoStageNet.stride - 1)])
    with pytest.raises(run_sample.FlagError, match='--cam_crop_size: expected an integer >= %d'
                                                   % TwoStageNet.stride):
        run_sample.resolve_args(low)
    ok = parser.parse_args(['--cam_network', 'two_stage', '--cam_crop_size',
                            str(TwoStageNet.stride), '--feature_dim',
                            str(TwoStageNet.feature_dim)])
    run_sample.resolve_args(ok)
    assert ok.cam_network == 'two_stage'
    wrong = parser.parse_args(['--cam_network', 'two_stage', '--feature_dim',
                               str(RESNET50.feature_dim)])
    with pytest.raises(run_sample.FlagError, match='features of --cam_network two_stage have %d'
                                                   % TwoStageNet.feature_dim):
        run_sample.resolve_args(wrong)


def test_a_backbone_without_irnet_stages_is_refused_by_irnet(registered):
    with pytest.raises(ValueError, match='--cam_network two_stage has no IRNet'):
        registered.irnet()


def test_lookup_by_name_or_alias_and_reserved_names():
    assert cam_network('resnet50') is RESNET50
    assert all(cam_network(alias) is RESNET50 for alias in RESNET50.aliases)
    with pytest.raises(ValueError, match=r"unknown CAM network 'vgg16' \(registered: resnet50"):
        cam_network('vgg16')
    for name in ('classifier', 'backbone', 'fc_edge1', 'two-stage'):
        with pytest.raises(ValueError, match='must be a Python identifier'):
            CamNetwork(name, lambda: TwoStageNet)
