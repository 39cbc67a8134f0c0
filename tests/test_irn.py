"""IRNet network: reference checkpoint layout and boundary maps of the fixtures."""
import json

import numpy as np
import pytest
import torch

from conftest import REF, VOC_MINI, reference_ids
from data.loaders import multiscale_inputs
from net.checkpoint import load_weights
from net.resnet50_irn import IRNet, edge_map
from voc12.devkit import VOC12

IDS = reference_ids('trainval')


@pytest.fixture(scope='module')
def irnet(irn_reference_weights):
    return load_weights(IRNet(), str(irn_reference_weights)).eval()


def test_reference_layout_loads_without_aliases(irn_reference_weights, irnet):
    raw = torch.load(irn_reference_weights, weights_only=True)
    assert len(raw) == len(json.loads((REF / 'layouts' / 'irn_state_dict.json').read_text()))
    assert torch.equal(irnet.mean_shift.running_mean, raw['fc_dp7.4.running_mean'])
    assert torch.equal(irnet.fc_edge6.weight, raw['edge_layers.5.weight'])


@pytest.mark.parametrize('image_id', IDS)
def test_edge_map_matches_reference(irnet, image_id):
    source = VOC12(str(VOC_MINI))
    pair = multiscale_inputs(source.read_image(image_id), (1.0,))[0]
    with torch.no_grad():
        edge = edge_map(irnet, pair)
    ref = np.load(REF / 'rw' / (image_id + '.npz'))['edge']
    assert edge.shape == ref.shape
    np.testing.assert_allclose(edge.numpy(), ref, atol=1e-5, rtol=0)


def test_backbone_is_frozen_and_stays_in_eval_mode():
    net = IRNet().train()
    assert not net.resnet50.training and net.fc_edge1.training
    edge, dp = net.optimizer_groups(0.1, 1e-4)
    assert (edge['lr'], dp['lr']) == (0.1, 1.0)                  # displacement branch at 10x
    assert edge['weight_decay'] == dp['weight_decay'] == 1e-4
    names = {id(p): n for n, p in net.named_parameters()}
    modules = [{names[id(p)].split('.')[0] for p in g['params']} for g in (edge, dp)]
    assert modules == [{'fc_edge%d' % i for i in range(1, 7)}, {'fc_dp%d' % i for i in range(1, 8)}]
    assert all(p.requires_grad for p in edge['params'] + dp['params'])
    assert not any(p.requires_grad for p in net.resnet50.parameters())
    out_edge, out_dp = net(torch.zeros(1, 3, 64, 64))
    assert out_edge.shape == (1, 1, 16, 16) and out_dp.shape == (1, 2, 16, 16)
