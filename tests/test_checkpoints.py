"""Loading the authors' checkpoint layout and our own weights; clear errors."""
import json

import numpy as np
import pytest
import torch

from conftest import REF
from net.checkpoint import load_weights, read_state_dict, save_weights
from net.resnet50 import ResNet50
from net.resnet50_cam import Net
from net.resnet50_clims import CAM, CLIMS

CLIMS_LAYOUT = json.loads((REF / 'layouts' / 'clims_state_dict.json').read_text())
# Classes of the fixture weights: rows of their classifier.
N_CLASSES = next(shape[0] for key, shape, _, _ in CLIMS_LAYOUT if key == 'classifier.weight')


def test_reference_layout_with_aliases_loads(clims_reference_weights):
    """Every key of the authors' layout (aliases included) lands in its canonical tensor."""
    raw = torch.load(clims_reference_weights, weights_only=True)
    assert list(raw) == [key for key, _, _, _ in CLIMS_LAYOUT]
    model = load_weights(CLIMS(N_CLASSES), str(clims_reference_weights))
    ours = model.state_dict()
    assert set(ours) == {canonical for _, _, _, canonical in CLIMS_LAYOUT}
    assert len(ours) < len(CLIMS_LAYOUT)      # the layout does hold aliases
    for key, _, _, canonical in CLIMS_LAYOUT:
        assert torch.equal(ours[canonical], raw[key]), key


def test_safetensors_round_trip(tmp_path, clims_reference_weights):
    model = load_weights(Net(N_CLASSES), str(clims_reference_weights))
    path = tmp_path / 'w.safetensors'
    save_weights(model, str(path))
    again = load_weights(CAM(N_CLASSES), str(path))
    for key, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key])


def test_dataparallel_prefix_is_accepted(tmp_path):
    model = Net(N_CLASSES)
    path = tmp_path / 'dp.pth'
    torch.save({'module.' + k: v for k, v in model.state_dict().items()}, path)
    loaded = load_weights(Net(N_CLASSES), str(path))
    assert torch.equal(loaded.classifier.weight, model.classifier.weight)


def test_missing_keys_are_an_error_naming_the_file(tmp_path):
    state = Net(N_CLASSES).state_dict()
    del state['resnet50.layer4.2.bn3.weight']
    path = tmp_path / 'missing.pth'
    torch.save(state, path)
    with pytest.raises(ValueError, match=r'missing\.pth.*1 missing keys.*layer4\.2\.bn3\.weight'):
        load_weights(Net(N_CLASSES), str(path))


def test_unexpected_keys_are_an_error_naming_the_file(tmp_path):
    state = Net(N_CLASSES).state_dict()
    state['edge_layers.0.weight'] = torch.zeros(3)
    path = tmp_path / 'irn.pth'
    torch.save(state, path)
    with pytest.raises(ValueError, match=r'irn\.pth.*1 unexpected keys.*edge_layers'):
        load_weights(CLIMS(N_CLASSES), str(path))


def test_shape_mismatch_is_an_error(tmp_path):
    state = Net(n_classes=N_CLASSES + 1).state_dict()
    path = tmp_path / 'coco.pth'
    torch.save(state, path)
    with pytest.raises(ValueError, match=r'coco\.pth.*1 shape mismatches.*classifier\.weight'):
        load_weights(Net(N_CLASSES), str(path))


def test_missing_and_unsafe_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pth does not exist'):
        load_weights(Net(N_CLASSES), str(tmp_path / 'nope.pth'))
    path = tmp_path / 'pickle.pth'
    torch.save({'x': np.zeros(3, dtype=object)}, path)
    with pytest.raises(ValueError, match='pickle.pth holds Python objects other than tensors'):
        read_state_dict(str(path))


def test_imagenet_weights_from_local_file(tmp_path):
    import torchvision
    reference = torchvision.models.resnet50(weights=None)
    path = tmp_path / 'resnet50-0676ba61.pth'
    torch.save(reference.state_dict(), path)
    backbone = ResNet50()
    backbone.load_imagenet_weights(str(path))
    assert torch.equal(backbone.layer1[0].conv1.weight, reference.layer1[0].conv1.weight)
    with pytest.raises(FileNotFoundError, match='resnet50-19c8e357.pth'):
        backbone.load_imagenet_weights(str(tmp_path / 'absent.pth'))


def test_output_stride_16_and_trainable_parts():
    net = Net(N_CLASSES)
    with torch.no_grad():
        feats = net.features(torch.zeros(1, 3, 64, 96))
    assert feats.shape == (1, 2048, 4, 6)
    backbone, head = net.trainable_parameters()
    assert not net.resnet50.conv1.weight.requires_grad
    assert net.resnet50.layer2[0].conv1.weight.requires_grad        # the authors' Net detaches none
    assert net.resnet50.layer3[0].bn1.weight.requires_grad           # frozen stats, trainable affine
    assert head == [net.classifier.weight]
    clims = CLIMS(N_CLASSES)
    assert clims.resnet50.layer1[0].conv1.weight.requires_grad
    assert not clims.resnet50.bn1.weight.requires_grad
    clims.eval()
    with torch.no_grad():
        maps = clims(torch.zeros(2, 3, 32, 32))
    assert maps.shape == (2, N_CLASSES, 2, 2)
    assert float(maps.min()) >= 0 and float(maps.max()) <= 1


def test_frozen_batchnorm_ignores_batch_statistics():
    torch.manual_seed(0)
    net = Net(N_CLASSES)
    net.train()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a = net(x)
        b = net(x[:1])
    # random weights give logits of order 1e2: allow float32 summation-order noise
    # (batch statistics would change them by order 1)
    torch.testing.assert_close(a[:1], b, rtol=0, atol=1e-4 * float(a.abs().max()))
    assert torch.equal(net.resnet50.bn1.running_mean, torch.zeros(64))
