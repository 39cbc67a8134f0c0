"""Wiring of the stages that the one-step reference tests cannot see.

Each test goes through the stage's own code: consecutive training steps
(gradients of the current batch only), the schedule length each stage builds
from its epochs, the training dataset each stage builds, epoch-dependent
shuffling and augmentation, the transforms of the classification dataset,
labels that keep their class ids under rescaling, the random crop window,
the segmentation CRF's settings, the multi-scale CAM sum, VOC masks. Found by
bench/mutation_probe.py.
"""
import copy
import random
import shutil
import types

import numpy as np
import pydensecrf.densecrf as dcrf
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from pydensecrf.utils import unary_from_softmax

from conftest import REF, VOC_MINI
from data.loaders import ClassificationDataset, SegmentationTrainDataset
from misc import imutils
from misc.torchutils import reference_poly_sgd
from net.registry import RESNET50
from pipeline import engine
from pipeline.engine import Optimiser, epoch_loader
from reference_step import reference_args
import run_sample
from step import train_cam, train_irn, train_qa_clims, train_seg
from wsss.cam import present_class_cams
from wsss.crf import crf_inference_prob
from wsss.path_index import AffinityDataset, PathIndex
from test_augment_alignment import PositionCodedSource, block_label_map, position_coded_image
from voc12.devkit import VOC12

DEVICE = torch.device('cpu')


class Stop(Exception):
    """Raised by a spy to end a stage's run() once the wiring under test is built."""


def gradients(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_second_step_uses_only_its_batch(model, step, loss_of, first, second):
    """After step(first) and step(second), every gradient is that of ``second`` alone
    at the weights the first step left (computed on a copy of the model)."""
    step(first)
    fresh = copy.deepcopy(model)
    fresh.zero_grad(set_to_none=True)
    loss_of(fresh, second).backward()
    expected = gradients(fresh)
    step(second)
    ours = gradients(model)
    assert expected and sorted(ours) == sorted(expected)
    for name, grad in expected.items():
        torch.testing.assert_close(ours[name], grad, rtol=1e-4, atol=1e-6 * float(
            grad.abs().max()), msg=name)


def test_train_cam_steps_use_the_gradient_of_their_own_batch():
    torch.manual_seed(0)
    args = reference_args('--cam_learning_rate', '0.01')
    model, optimizer, scheduler = train_cam.build_training(args, 3, 10, DEVICE)
    batches = [{'img': torch.randn(2, 3, 32, 32), 'label': torch.tensor([[1., 0, 1], [0, 1, 0]])}
               for _ in range(2)]
    optimiser = Optimiser(optimizer, scheduler, DEVICE)
    assert_second_step_uses_only_its_batch(
        model, lambda b: optimiser.step(model, [b], train_cam.batch_loss),
        lambda m, b: train_cam.batch_loss(m, b)['loss'], *batches)


def random_affinity_batch(path_index, crop):
    n_dirs, n_src = path_index.dst_indices.shape
    labels = torch.randint(0, 3, (2, n_dirs, n_src))
    return {'img': torch.randn(2, 3, crop, crop), 'aff_bg_pos_label': (labels == 0).float(),
            'aff_fg_pos_label': (labels == 1).float(), 'aff_neg_label': (labels == 2).float()}


def test_train_irn_steps_use_the_gradient_of_their_own_batch():
    torch.manual_seed(0)
    args = reference_args('--irn_crop_size', '96', '--irn_learning_rate', '0.1')
    path_index = train_irn.build_path_index(args)
    model, optimizer, scheduler = train_irn.build_training(args, path_index, 10, DEVICE)
    batches = [random_affinity_batch(path_index, 96) for _ in range(2)]
    optimiser = Optimiser(optimizer, scheduler, DEVICE)
    assert_second_step_uses_only_its_batch(
        model, lambda b: optimiser.step(model, [b], train_irn.batch_loss),
        lambda m, b: train_irn.batch_loss(m, b)['loss'], *batches)


def test_engine_steps_use_the_gradient_of_their_own_loss():
    """Optimiser.step: after two steps the gradient is d(second loss)/dw alone."""
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    optimizer, scheduler = reference_poly_sgd([{'params': [w], 'lr': 0.1}], 1e-4, 10)
    optimiser = Optimiser(optimizer, scheduler, DEVICE)
    optimiser.step(torch.nn.Identity(), [{}], lambda forward, pack: {'loss': (w ** 2).sum()})
    after_first = w.detach().clone()
    optimiser.step(torch.nn.Identity(), [{}], lambda forward, pack: {'loss': (3 * w).sum()})
    torch.testing.assert_close(w.grad, torch.full((2,), 3.0))
    assert not torch.equal(w.detach(), after_first)


def test_qa_clims_schedule_spans_every_epoch(monkeypatch):
    """The poly schedule of build_training runs over steps_per_epoch x --clims_num_epoches."""
    monkeypatch.setattr(train_qa_clims, 'load_weights', lambda model, path: model)
    args = reference_args('--clims_num_epoches', '3', '--clims_learning_rate', '0.01')
    steps_per_epoch = 2
    _, optimizer, scheduler = train_qa_clims.build_training(args, 4, steps_per_epoch, DEVICE)
    max_step = steps_per_epoch * args.clims_num_epoches
    for k in range(max_step):
        expected = [g['initial_lr'] * (1 - k / max_step) ** 0.9 for g in optimizer.param_groups]
        np.testing.assert_allclose([g['lr'] for g in optimizer.param_groups], expected,
                                   rtol=1e-12)
        optimizer.step()
        scheduler.step()
    assert [g['initial_lr'] for g in optimizer.param_groups] == pytest.approx([0.01, 0.1])


def spy_run(monkeypatch, module, name, argv):
    """Run a stage through run_sample until ``module.name`` is called; returns its args."""
    seen = []

    def spy(*args, **kwargs):
        seen.append(args)
        raise Stop
    monkeypatch.setattr(module, name, spy)
    with pytest.raises(Stop):
        run_sample.main([str(a) for a in argv])
    return seen[0]


def test_train_irn_schedule_spans_every_epoch(tmp_path, monkeypatch):
    shutil.copytree(REF / 'ir_label', tmp_path / 'ir_label')
    epochs, batch = 3, 2
    _, _, max_step, _ = spy_run(monkeypatch, train_irn, 'build_training', [
        '--voc12_root', VOC_MINI, '--work_space', tmp_path, '--device', 'cpu',
        '--num_workers', '0', '--train_list', 'trainval', '--irn_crop_size', '96',
        '--irn_batch_size', batch, '--irn_num_epoches', epochs, '--train_irn_pass', 'True'])
    n_images = len(VOC12(str(VOC_MINI)).ids('trainval'))
    assert max_step == (n_images // batch) * epochs


def test_train_cam_builds_the_recipe_dataset(tmp_path, monkeypatch):
    """train_cam trains on random long-side resizes, flips and random crops."""
    dataset = spy_run(monkeypatch, engine.Training, 'plan', [
        '--voc12_root', VOC_MINI, '--work_space', tmp_path, '--device', 'cpu',
        '--num_workers', '0', '--train_list', 'train', '--val_list', '',
        '--cam_resize_long', '40,80', '--cam_crop_size', '64', '--train_cam_pass', 'True'])[1]
    assert isinstance(dataset, ClassificationDataset)
    assert (tuple(dataset.resize_long), dataset.hor_flip, dataset.crop_size,
            dataset.crop_method) == ((40, 80), True, 64, 'random')
    assert dataset.ids == VOC12(str(VOC_MINI)).ids('train')


def test_train_seg_lr_is_recomputed_every_lr_decay_every_iterations():
    p = torch.nn.Parameter(torch.zeros(1))
    model = types.SimpleNamespace(optimizer_groups=lambda lr, wd: [
        {'params': [p], 'lr': lr, 'weight_decay': wd}])
    args = reference_args('--seg_learning_rate', '0.1', '--seg_num_iters', '12',
                          '--seg_lr_decay_every', '3')
    optimizer, scheduler = train_seg.optimizer_for(model, args)
    for k in range(12):
        expected = 0.1 * (1 - (k - k % 3) / 12) ** 0.9
        assert optimizer.param_groups[0]['lr'] == pytest.approx(expected, rel=1e-12), k
        optimizer.step()
        scheduler.step()


def test_epoch_loader_shuffles_and_seeds_augmentation_per_epoch():
    """DistributedSampler's order for (seed, epoch): torch.randperm with seed + epoch;
    the augmentation stream (python's random) differs between epochs and repeats for one."""
    args = types.SimpleNamespace(seed=3, num_workers=0)
    data = list(range(10))

    def epoch(e):
        order = [int(i) for batch in epoch_loader(data, 2, args, e, True, True) for i in batch]
        return order, random.random()
    orders, draws = zip(*(epoch(e) for e in (0, 1, 0)))
    for e, order in zip((0, 1, 0), orders):
        g = torch.Generator().manual_seed(args.seed + e)
        assert order == torch.randperm(len(data), generator=g).tolist()
    assert orders[0] != orders[1]
    assert draws[0] == draws[2] and draws[0] != draws[1]


@pytest.fixture(scope='module')
def coded_voc(tmp_path_factory):
    """A position-coded VOC-class source (see test_augment_alignment): (source, labels, dir)."""
    root = tmp_path_factory.mktemp('coded')
    rng = np.random.default_rng(11)
    labels = {'wide': block_label_map(rng, (40, 70), len(VOC12.class_names))}
    for folder in ('masks', 'labels'):
        (root / folder).mkdir()
    for name, label in labels.items():
        Image.fromarray(position_coded_image(label)).save(root / (name + '.png'))
        for folder in ('masks', 'labels'):
            Image.fromarray(label).save(root / folder / (name + '.png'))
    return PositionCodedSource(str(root), VOC12.class_names, labels), labels, str(root / 'labels')


def test_classification_flip_is_horizontal(coded_voc):
    source = coded_voc[0]
    dataset = ClassificationDataset(source, ['wide'], hor_flip=True)
    plain = imutils.imagenet_normalize(source.read_image('wide')).transpose(2, 0, 1)
    seen = set()
    for seed in range(20):
        random.seed(seed)
        img = dataset[0]['img'].numpy()
        flipped = np.array_equal(img, plain[:, :, ::-1])
        assert flipped or np.array_equal(img, plain)
        seen.add(flipped)
    assert seen == {True, False}


def test_classification_crops_random_and_top_left(coded_voc):
    source = coded_voc[0]
    plain = imutils.imagenet_normalize(source.read_image('wide')).transpose(2, 0, 1)
    top_left = ClassificationDataset(source, ['wide'], crop_size=32, crop_method='top_left')
    np.testing.assert_array_equal(top_left[0]['img'].numpy(), plain[:, :32, :32])
    rand = ClassificationDataset(source, ['wide'], crop_size=32, crop_method='random')
    windows = set()
    for seed in range(20):
        random.seed(seed)
        img = rand[0]['img'].numpy()
        matches = [(y, x) for y in range(40 - 32 + 1) for x in range(70 - 32 + 1)
                   if np.array_equal(img, plain[:, y:y + 32, x:x + 32])]
        assert len(matches) == 1
        windows.add(matches[0])
    assert len(windows) > 5


def test_random_resize_long_reaches_both_ends(coded_voc):
    dataset = ClassificationDataset(coded_voc[0], ['wide'], resize_long=(20, 24))
    longs = set()
    for seed in range(60):
        random.seed(seed)
        longs.add(max(dataset[0]['img'].shape[1:]))
    assert longs == set(range(20, 25))


def test_random_crop_offsets_cover_every_window():
    """Offsets uniform in 0..|side - crop| on each axis, x from the width, y from the height."""
    random.seed(0)
    draws = [imutils.random_crop_offsets((80, 130), 96) for _ in range(2000)]
    assert {oy for oy, _ in draws} == set(range(96 - 80 + 1))
    assert {ox for _, ox in draws} == set(range(130 - 96 + 1))


def test_rescaled_labels_keep_their_class_ids(coded_voc):
    """Labels are resized nearest-neighbour: no value that is not in the original map."""
    source, labels, label_dir = coded_voc
    allowed = set(np.unique(labels['wide'])) | {255}
    path_index = PathIndex(radius=10, default_size=(24, 24))
    datasets = [SegmentationTrainDataset(source, ['wide'], label_dir, 48, (0.6, 0.8, 1.3, 1.7)),
                AffinityDataset(source, ['wide'], label_dir, 96, path_index, rescale=(0.5, 1.5))]
    for dataset in datasets:
        for seed in range(6):
            random.seed(seed)
            assert set(np.unique(dataset[0]['label'].numpy())) <= allowed


def test_segmentation_crf_uses_deeplabs_settings():
    """crf_inference_prob = pydensecrf with DeepLab's CRF: Gaussian sxy 1 compat 3,
    bilateral sxy 67 srgb 3 compat 4, 10 mean-field iterations."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    logits = torch.from_numpy(rng.normal(size=(4, 24, 32)).astype(np.float32))
    probs = F.softmax(logits, dim=0).numpy()

    def deeplab_crf(srgb):
        crf = dcrf.DenseCRF2D(32, 24, 4)
        crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs)))
        crf.addPairwiseGaussian(sxy=1, compat=3)
        crf.addPairwiseBilateral(sxy=67, srgb=srgb, rgbim=np.ascontiguousarray(img), compat=4)
        return np.array(crf.inference(10), np.float32).reshape(4, 24, 32)
    expected = deeplab_crf(3)
    np.testing.assert_array_equal(crf_inference_prob(img, probs), expected)
    assert not np.allclose(deeplab_crf(5), expected, atol=1e-4)   # the settings matter here


def test_multiscale_cams_are_summed_before_normalisation():
    """make_cam's fusion: the scales' maps SUMMED, then / (max + 1e-5); with small peaks
    the eps makes the sum and the mean differ."""
    size = (32, 48)
    h, w = imutils.strided_size(size, 4)
    torch.manual_seed(0)
    outputs = [torch.rand(3, h, w) * 1e-5 for _ in range(3)]
    keys, cam, _ = present_class_cams(outputs, size, torch.tensor([1., 0, 1]), RESNET50.stride)
    total = (outputs[0] + outputs[1] + outputs[2])[[0, 2]]
    expected = total / (total.amax(dim=(1, 2), keepdim=True) + 1e-5)
    np.testing.assert_array_equal(keys, [0, 2])
    np.testing.assert_allclose(cam, expected.numpy(), rtol=1e-6)


def voc_folder(root):
    for sub in ('JPEGImages', 'Annotations', 'SegmentationClass', 'SegmentationClassAug'):
        (root / sub).mkdir(parents=True)
    return VOC12(str(root))


def test_voc_mask_is_the_voc_file_when_both_exist(tmp_path):
    """SegmentationClass (with its void borders) first, the SBD mask only without one."""
    source = voc_folder(tmp_path)
    voc, sbd = np.full((4, 5), 255, np.uint8), np.full((4, 5), 7, np.uint8)
    Image.fromarray(voc).save(tmp_path / 'SegmentationClass' / 'a.png')
    for name in ('a', 'b'):
        Image.fromarray(sbd).save(tmp_path / 'SegmentationClassAug' / (name + '.png'))
    np.testing.assert_array_equal(source.read_mask('a'), voc)
    np.testing.assert_array_equal(source.read_mask('b'), sbd)

