"""One QA-CLIMS training step against qa_clims_step.npz (with and without the mask CLIP)."""
import json

import numpy as np
import pytest
import torch

from conftest import REF
from misc.torchutils import reference_poly_sgd
from net.checkpoint import load_weights
from net.clip_models import load_clip
from net.resnet50_clims import CLIMS
from net.rtc_objective import ObjectiveConfig, qa_clims_losses
from tools.gen_text_feats_cache import main as gen_cache
from voc12.devkit import TEXT_CLASS_NAMES
from vqa.text_bank import build_text_bank
from vqa.text_features import TextFeatureCache

VQA = REF / 'vqa'
TINY = REF / 'layouts' / 'maskclip_tiny_state_dict.pt'


@pytest.fixture(scope='module')
def step_inputs(tmp_path_factory):
    ref = np.load(REF / 'qa_clims_step.npz')
    out = tmp_path_factory.mktemp('step')
    gen_cache(['voc', '--vqa_fg_file', str(VQA / 'voc_vqa_fg_mini.json'),
               '--vqa_bg_file', str(VQA / 'voc_vqa_bg_mini.json'),
               '--vqa_fg_cache_file', str(out / 'fg.safetensors'),
               '--vqa_bg_cache_file', str(out / 'bg.safetensors'), '--clip', str(TINY)])
    clip = load_clip(str(TINY))
    names = [str(n) for n in ref['names']]
    label = torch.from_numpy(ref['label'])
    pairs = [(names[n], int(c)) for n, c in zip(*torch.nonzero(label, as_tuple=True))]
    with torch.no_grad():
        label_feats = clip.encode_prompts(list(TEXT_CLASS_NAMES))
    bank = build_text_bank(pairs, TEXT_CLASS_NAMES, label_feats,
                           json.loads((VQA / 'voc_vqa_fg_mini.json').read_text()),
                           json.loads((VQA / 'voc_vqa_bg_mini.json').read_text()),
                           TextFeatureCache.load(str(out / 'fg.safetensors')),
                           TextFeatureCache.load(str(out / 'bg.safetensors')))
    return ref, clip, bank, names, label


@pytest.mark.parametrize('variant', ['maskclip', 'nomask'])
def test_one_training_step_matches_reference(step_inputs, clims_reference_weights, variant):
    ref, clip, bank, names, label = step_inputs
    p = variant + '_'
    torch.manual_seed(0)
    model = load_weights(CLIMS(), str(clims_reference_weights)).train()
    backbone, head = model.trainable_parameters()
    optimizer, scheduler = reference_poly_sgd([{'params': backbone, 'lr': 0.00035},
                                               {'params': head, 'lr': 0.0035}], 1e-4, 100)
    cfg = ObjectiveConfig(hyper=tuple(ref['hyper']), nce_t=float(ref['nce_t']),
                          fat_alpha=float(ref['fat_alpha']), use_mask_clip=variant == 'maskclip',
                          clip_input_size=int(ref['clip_input_size']))
    img = torch.from_numpy(ref['img'])
    x = model(img)
    terms = qa_clims_losses(x, img, label, names, clip, bank, cfg)
    np.testing.assert_allclose(x.detach().numpy(), ref[p + 'x'], atol=1e-3, rtol=0)
    for key in ('L_FRC', 'L_BRC', 'L_REG', 'loss'):
        np.testing.assert_allclose(terms[key].item(), ref[p + key], rtol=1e-4)
    n, c = terms['instances']
    np.testing.assert_array_equal((n * 20 + c).numpy(), ref[p + 'fg_indices'])
    np.testing.assert_array_equal(terms['skipped'].numpy(), ref[p + 'instance_skipped'])
    np.testing.assert_allclose(terms['cam'].detach().numpy(), ref[p + 'cam_clip_fg'], atol=1e-3)
    np.testing.assert_allclose(terms['img_clip'].numpy(), ref[p + 'img_clip'][n.numpy()],
                               rtol=1e-5, atol=1e-5)
    kept = ~terms['skipped']
    np.testing.assert_allclose(terms['fg_features'].detach().numpy(),
                               ref[p + 'fg_img_features'][kept.numpy()], rtol=1e-3, atol=1e-4)
    terms['loss'].backward()
    grad = model.classifier.weight.grad
    np.testing.assert_allclose(grad.numpy(), ref[p + 'classifier_grad'], atol=1e-5, rtol=1e-3)
    np.testing.assert_allclose(grad.norm().item(), ref[p + 'classifier_grad_norm'], rtol=1e-3)
    optimizer.step()
    np.testing.assert_allclose(model.classifier.weight.detach().numpy(),
                               ref[p + 'classifier_weight_after_step'], atol=1e-6, rtol=1e-5)


def test_batch_with_a_single_positive_label(step_inputs, clims_reference_weights):
    """The reference crashes on it (squeeze to 0-d); ours computes the loss."""
    ref, clip, bank, names, label = step_inputs
    model = load_weights(CLIMS(), str(clims_reference_weights)).train()
    single = torch.zeros(1, 20)
    single[0, 14] = 1                                  # 2011_009504: person
    img = torch.from_numpy(ref['img'][:1])
    terms = qa_clims_losses(model(img), img, single, [names[0]], clip, bank,
                            ObjectiveConfig(clip_input_size=64))
    assert torch.isfinite(terms['loss']) and terms['L_FRC'] > 0
    terms['loss'].backward()
    assert model.classifier.weight.grad[14].abs().sum() > 0
