"""net.resnet50_cam.InferenceCAM (what make_cam / make_clims run) with the ResNet-50
backbone's inference form (net.folded_resnet) against the CAM networks it is built from,
with the fixtures' weights (authors' layout) on a fixture image."""
import numpy as np
import pytest
import torch

from conftest import VOC_MINI, reference_ids
from data.loaders import multiscale_inputs
from net.checkpoint import load_weights
from net.folded_resnet import FoldedResNet, uses_onednn_bf16_fusion, uses_onednn_fusion
from net.registry import RESNET50
from net.resnet50_cam import InferenceCAM
from voc12.devkit import VOC12

NETWORKS = {'baseline': RESNET50.cam, 'qa_clims': RESNET50.clims_cam}
SCALES = (1.0, 0.5)


@pytest.fixture(scope='module')
def source():
    return VOC12(str(VOC_MINI))


@pytest.fixture(scope='module')
def pairs(source):
    """[image, flip] inputs of the first fixture image at two scales."""
    return multiscale_inputs(source.read_image(reference_ids('trainval')[0]), SCALES)


def eval_network(name, source, weights, dtype=torch.float32):
    model = load_weights(NETWORKS[name](source.n_classes), str(weights))
    return model.to(dtype).eval()


@pytest.mark.parametrize('name', sorted(NETWORKS))
def test_float32_maps_equal_the_networks_within_rounding(name, source, pairs,
                                                         clims_reference_weights):
    """The fused CPU kernels (BatchNorm folded, ReLU and residual inside the convolution)."""
    model = eval_network(name, source, clims_reference_weights)
    network = InferenceCAM(model)
    assert isinstance(network.features, FoldedResNet) and network.stride == model.stride
    assert uses_onednn_fusion(pairs[0])
    with torch.inference_mode():
        for pair in pairs:
            expected, ours = model(pair), network(pair)
            assert ours.shape == expected.shape and ours.is_contiguous()
            assert expected.max() > 0
            np.testing.assert_allclose(ours.numpy(), expected.numpy(), rtol=0,
                                       atol=1e-5 * float(expected.max()))


@pytest.mark.parametrize('name', sorted(NETWORKS))
def test_folding_is_exact_in_float64(name, source, pairs, clims_reference_weights):
    """In float64 (ordinary F.conv2d path) only the folding differs from the network:
    w * gamma / sqrt(var + eps) and beta - mean * gamma / sqrt(var + eps) are exact."""
    model = eval_network(name, source, clims_reference_weights, torch.float64)
    network = InferenceCAM(model)
    pair = pairs[-1].double()
    with torch.inference_mode():
        assert not uses_onednn_fusion(pair)
        expected, ours = model(pair), network(pair)
    np.testing.assert_allclose(ours.numpy(), expected.numpy(), rtol=0,
                               atol=1e-12 * float(expected.max()))


def test_autocast_runs_the_convolutions_in_bf16(source, pairs, clims_reference_weights):
    """--amp: under CPU autocast the folded network computes in bfloat16 (oneDNN's fused
    bf16 kernels where the CPU has them, F.conv2d otherwise)."""
    network = InferenceCAM(eval_network('qa_clims', source, clims_reference_weights))
    pair = pairs[-1]
    with torch.inference_mode():
        expected = network(pair)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            assert not uses_onednn_fusion(pair)
            assert uses_onednn_bf16_fusion(pair) == torch.ops.mkldnn._is_mkldnn_bf16_supported()
            ours = network(pair)
    assert ours.dtype == torch.bfloat16
    assert not torch.equal(ours.float(), expected)
    np.testing.assert_allclose(ours.float().numpy(), expected.numpy(), rtol=0,
                               atol=0.05 * float(expected.max()))


def test_a_model_in_training_mode_is_refused(source, clims_reference_weights):
    model = eval_network('qa_clims', source, clims_reference_weights)
    with pytest.raises(ValueError, match='eval mode'):
        InferenceCAM(model.train())
    with pytest.raises(ValueError, match='eval mode'):
        FoldedResNet(model.backbone)
