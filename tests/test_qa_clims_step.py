"""One QA-CLIMS training step against qa_clims_step.npz (with and without the mask CLIP),
built by the stage's own functions (pipeline.qa_clims_inputs: text bank, objective;
step.train_qa_clims: network, optimiser groups and schedule, batch terms; the engine's
step) from run_sample.py's arguments."""
import numpy as np
import pytest
import torch

from conftest import REF, VOC_MINI
from pipeline.engine import Optimiser
from pipeline.qa_clims_inputs import objective_config, text_bank_for, training_clip
from pipeline.stage import build_source
import run_sample
from step.train_qa_clims import build_training, forward_terms
from tools.gen_text_feats_cache import main as gen_cache

VQA = REF / 'vqa'
TINY = REF / 'layouts' / 'maskclip_tiny_state_dict.pt'
DEVICE = torch.device('cpu')


@pytest.fixture(scope='module')
def ref():
    return np.load(REF / 'qa_clims_step.npz')


@pytest.fixture(scope='module')
def caches(tmp_path_factory):
    out = tmp_path_factory.mktemp('step')
    gen_cache(['voc', '--vqa_fg_file', str(VQA / 'voc_vqa_fg_mini.json'),
               '--vqa_bg_file', str(VQA / 'voc_vqa_bg_mini.json'),
               '--vqa_fg_cache_file', str(out / 'fg.safetensors'),
               '--vqa_bg_cache_file', str(out / 'bg.safetensors'), '--clip', str(TINY)])
    return out


def stage_args(ref, caches, weights, use_mask_clip):
    """run_sample.py arguments of the fixture's step. The fixture is one process's step on
    its own batch, so the contrastive sums are unscaled: --clims_loss_ref_batch = its batch."""
    argv = ['--voc12_root', str(VOC_MINI), '--work_space', str(caches), '--device', 'cpu',
            '--cam_weights_name', str(weights), '--clip', str(TINY),
            '--mask_clip_weights', str(TINY), '--use_mask_clip', str(use_mask_clip),
            '--vqa_fg_file', str(VQA / 'voc_vqa_fg_mini.json'),
            '--vqa_bg_file', str(VQA / 'voc_vqa_bg_mini.json'),
            '--vqa_fg_cache_file', str(caches / 'fg.safetensors'),
            '--vqa_bg_cache_file', str(caches / 'bg.safetensors'),
            '--hyper', ','.join(repr(float(h)) for h in ref['hyper']),
            '--nce_t', repr(float(ref['nce_t'])),
            '--mask_adapter_alpha', repr(float(ref['fat_alpha'])),
            '--clims_loss_ref_batch', str(len(ref['names'])), '--train_qa_clims_pass', 'True']
    args = run_sample.build_parser().parse_args(argv)
    run_sample.resolve_args(args)
    return args


def stage_step_inputs(ref, args):
    """(source, CLIP, text bank, objective config, batch) as run() makes them."""
    source = build_source(args)
    names = [str(n) for n in ref['names']]
    clip = training_clip(args, DEVICE)
    bank = text_bank_for(source, names, clip, args, DEVICE)
    pack = {'img': torch.from_numpy(ref['img']), 'label': torch.from_numpy(ref['label']),
            'name': names}
    return source, clip, bank, objective_config(args, clip), pack


@pytest.mark.parametrize('variant', ['maskclip', 'nomask'])
def test_one_training_step_matches_reference(ref, caches, clims_reference_weights, variant):
    p = variant + '_'
    args = stage_args(ref, caches, clims_reference_weights, variant == 'maskclip')
    source, clip, bank, cfg, pack = stage_step_inputs(ref, args)
    n_classes = ref['label'].shape[1]
    assert source.n_classes == n_classes and cfg.clip_input_size == int(ref['clip_input_size'])
    model, optimizer, scheduler = build_training(args, source.n_classes, 1, DEVICE)
    model.train()

    backbone_group, head_group = optimizer.param_groups
    assert [id(q) for q in head_group['params']] == [id(model.classifier.weight)]
    assert backbone_group['lr'] == args.clims_learning_rate
    assert head_group['lr'] == pytest.approx(10 * args.clims_learning_rate, rel=1e-12)
    frozen = {k: v.detach().clone() for k, v in model.named_parameters() if not v.requires_grad}
    assert frozen and all(k.startswith(('resnet50.conv1.', 'resnet50.bn1.')) for k in frozen)
    in_groups = {id(q) for g in optimizer.param_groups for q in g['params']}
    assert in_groups == {id(q) for q in model.parameters() if q.requires_grad}

    x, terms = forward_terms(model, pack, clip, bank, cfg)
    np.testing.assert_allclose(x.detach().numpy(), ref[p + 'x'], atol=1e-3, rtol=0)
    for key in ('L_FRC', 'L_BRC', 'L_REG', 'loss'):
        np.testing.assert_allclose(terms[key].item(), ref[p + key], rtol=1e-4)
    n, c = terms['instances']
    np.testing.assert_array_equal((n * n_classes + c).numpy(), ref[p + 'fg_indices'])
    assert [source.class_names[i] for i in c] == list(ref[p + 'fg_labels'])
    assert [pack['name'][i] for i in n] == list(ref[p + 'fg_image_names'])
    np.testing.assert_array_equal(terms['skipped'].numpy(), ref[p + 'instance_skipped'])
    np.testing.assert_allclose(terms['cam'].detach().numpy(), ref[p + 'cam_clip_fg'], atol=1e-3)
    np.testing.assert_allclose(terms['img_clip'].numpy(), ref[p + 'img_clip'][n.numpy()],
                               rtol=1e-5, atol=1e-5)
    kept = ~terms['skipped']
    np.testing.assert_allclose(terms['fg_features'].detach().numpy(),
                               ref[p + 'fg_img_features'][kept.numpy()], rtol=1e-3, atol=1e-4)

    Optimiser(optimizer, scheduler, DEVICE, args.amp).step(
        model, [pack], lambda forward, batch: {'loss': terms['loss']})
    grad = model.classifier.weight.grad
    np.testing.assert_allclose(grad.numpy(), ref[p + 'classifier_grad'], atol=1e-5, rtol=1e-3)
    np.testing.assert_allclose(grad.norm().item(), ref[p + 'classifier_grad_norm'], rtol=1e-3)
    np.testing.assert_allclose(model.classifier.weight.detach().numpy(),
                               ref[p + 'classifier_weight_after_step'], atol=1e-6, rtol=1e-5)
    for name, q in model.named_parameters():
        if name in frozen:
            assert torch.equal(q, frozen[name]), name


def test_batch_with_a_single_positive_label(ref, caches, clims_reference_weights):
    """The reference crashes on it (squeeze to 0-d); ours computes the loss: the first
    image of the fixture with only its first class."""
    args = stage_args(ref, caches, clims_reference_weights, True)
    source, clip, bank, cfg, pack = stage_step_inputs(ref, args)
    model, _, _ = build_training(args, source.n_classes, 1, DEVICE)
    first_class = int(np.flatnonzero(ref['label'][0])[0])
    single = torch.zeros(1, ref['label'].shape[1])
    single[0, first_class] = 1
    one = {'img': pack['img'][:1], 'label': single, 'name': pack['name'][:1]}
    _, terms = forward_terms(model.train(), one, clip, bank, cfg)
    assert torch.isfinite(terms['loss']) and terms['L_FRC'] > 0
    terms['loss'].backward()
    assert model.classifier.weight.grad[first_class].abs().sum() > 0
