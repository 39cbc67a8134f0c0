"""train_irn: one step against the authors' run, loss terms, checkpoints, backbone from a
CAM checkpoint, determinism, DDP."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from coco14.dataset import COCO14
from conftest import REF, VOC_MINI, run_sample_cmd
from misc import imutils
from net.checkpoint import load_weights, read_state_dict
from net.resnet50_irn import IRNet, IRNetLoss, irn_total_loss
from pipeline.engine import Optimiser
from reference_step import (assert_within_max, check_frozen_unchanged, check_grad_norms,
                            check_optimizer_before_step, check_poly_lr_after_step,
                            fixture_batch, fixture_keys, frozen_snapshot, reference_args)
import run_sample
from step import train_irn
from tools.make_demo_coco import generate_demo_coco
from voc12.devkit import VOC12
from wsss.path_index import AffinityDataset, PathIndex, affinity_labels

# our loss terms (irn_total_loss) -> the fixture's names
LOSS_KEYS = {'bg_pos': 'bg_pos_aff_loss', 'fg_pos': 'fg_pos_aff_loss', 'pos': 'pos_aff_loss',
             'neg': 'neg_aff_loss', 'dp_fg': 'dp_fg_loss', 'dp_bg': 'dp_bg_loss',
             'loss': 'total_loss'}


def test_train_irn_step_matches_reference(irn_reference_weights, monkeypatch):
    """One step of the authors' step/train_irn.py (train_irn_step.npz), built by
    train_irn's own functions; tolerances of the fixture README, section 8."""
    ref = np.load(REF / 'train_irn_step.npz')
    args = reference_args('--irn_crop_size', int(ref['crop_size']),
                          '--irn_learning_rate', repr(float(ref['group_initial_lr'][0])),
                          '--irn_weight_decay', repr(float(ref['group_weight_decay'][0])))
    path_index = train_irn.build_path_index(args)
    assert (path_index.radius, path_index.radius_floor) == (int(ref['radius']),
                                                            int(ref['radius_floor']))
    for key in ('search_dst', 'src_indices', 'dst_indices'):
        np.testing.assert_array_equal(getattr(path_index, key), ref[key])

    source = VOC12(str(VOC_MINI))
    dataset = AffinityDataset(source, list(ref['names']), str(REF / 'ir_label'),
                              int(ref['crop_size']), path_index, rescale=None, hor_flip=False)
    pack = fixture_batch(dataset, ref, monkeypatch)
    for ours, key in (('img', 'img'), ('label', 'label_crop'), ('reduced_label', 'reduced_label'),
                      ('aff_bg_pos_label', 'bg_pos_label'), ('aff_fg_pos_label', 'fg_pos_label'),
                      ('aff_neg_label', 'neg_label')):
        assert pack[ours].dtype == torch.from_numpy(ref[key]).dtype, key
        np.testing.assert_array_equal(pack[ours].numpy(), ref[key], key)

    device = torch.device('cpu')
    model, optimizer, scheduler = train_irn.build_training(args, path_index,
                                                           int(ref['max_step']), device)
    assert model.path_index is path_index
    irnet = load_weights(model.irnet, str(irn_reference_weights))
    params = dict(irnet.named_parameters())
    assert list(params) == list(ref['param_names'])
    # The reference leaves requires_grad on for its detached backbone (only the branches
    # get a gradient); ours marks the backbone frozen (DDP needs every trainable tensor
    # to get a gradient): the trainable tensors are those the reference trains.
    trainable = [n for n, p in params.items() if p.requires_grad]
    assert trainable == list(ref['grad_not_none_names'])
    assert set(trainable) <= set(ref['requires_grad_names'])
    assert not set(ref['frozen_names']) & set(trainable)
    check_optimizer_before_step(irnet, optimizer, ref)
    with torch.no_grad():
        edge_out, dp_out = irnet(pack['img'])
    assert_within_max(edge_out, ref['edge_out'], 2e-5, 'edge_out')
    assert_within_max(dp_out, ref['dp_out'], 2e-5, 'dp_out')
    frozen = frozen_snapshot(irnet)

    with torch.no_grad():
        maps = model(pack['img'])
    terms = Optimiser(optimizer, scheduler, device).step(model, [pack], train_irn.batch_loss)
    assert_within_max(maps[0], ref['pos_aff_loss_map'], 2e-5, 'pos_aff_loss_map')
    assert sorted(terms) == sorted(LOSS_KEYS)
    for ours, key in LOSS_KEYS.items():
        np.testing.assert_allclose(terms[ours], ref[key], rtol=1e-5, err_msg=key)
    check_grad_norms(irnet, ref, rtol=1e-4)
    for name in fixture_keys(ref, 'grad__'):
        assert_within_max(params[name].grad, ref['grad__' + name], 1e-4, name)
    for name in fixture_keys(ref, 'after__'):
        assert_within_max(params[name], ref['after__' + name], 1e-4, name)
    check_frozen_unchanged(irnet, frozen)              # the backbone
    check_poly_lr_after_step(optimizer, ref)


def test_default_rescale_draws_the_authors_range(monkeypatch):
    """--irn_rescale defaults to the authors' (0.5, 1.5): factors from 0.5 to 1.5."""
    rescale = reference_args().irn_rescale
    img, label = np.zeros((40, 60, 3), np.uint8), np.zeros((40, 60), np.uint8)
    for draw, expected in ((0.0, (20, 30)), (1.0, (60, 90))):
        monkeypatch.setattr(imutils.random, 'random', lambda: draw)
        scaled_img, scaled_label = imutils.random_scale_pair(img, label, rescale)
        assert scaled_img.shape[:2] == scaled_label.shape == expected
    imutils.check_rescale_range(rescale, '--irn_rescale')
    imutils.check_rescale_range((), '--irn_rescale')                 # "" = no rescaling
    for bad in ((0.5, 1.0, 1.5), (1.5, 0.5), (0.5,)):
        with pytest.raises(ValueError, match='--irn_rescale'):
            imutils.check_rescale_range(bad, '--irn_rescale')


def test_coco_class_ids_above_20_give_affinity_pairs(tmp_path):
    """Label 75 (a COCO class: 81 labels with background) yields pairs in AffinityDataset."""
    root = tmp_path / 'coco'
    image_id, info = next(iter(generate_demo_coco(str(root), n_images=1).items()))
    source = COCO14(str(root))
    label = np.zeros(info['size'], np.uint8)          # background, class 75, an uncertain band
    label[:, label.shape[1] // 2:] = 75
    label[:, label.shape[1] // 2 - 4:label.shape[1] // 2] = 255
    (tmp_path / 'ir_label').mkdir()
    Image.fromarray(label).save(tmp_path / 'ir_label' / (image_id + '.png'))
    args = reference_args('--irn_crop_size', 96)
    path_index = train_irn.build_path_index(args)
    pack = AffinityDataset(source, [image_id], str(tmp_path / 'ir_label'), args.irn_crop_size,
                           path_index, rescale=None, hor_flip=False)[0]
    flat = pack['reduced_label'].numpy().reshape(-1)
    src, dst = flat[path_index.src_indices][None], flat[path_index.dst_indices]
    valid = (src != 255) & (dst != 255)
    np.testing.assert_array_equal(pack['aff_fg_pos_label'].numpy(), (src == dst) & (src == 75))
    np.testing.assert_array_equal(pack['aff_bg_pos_label'].numpy(), (src == dst) & (src == 0))
    np.testing.assert_array_equal(pack['aff_neg_label'].numpy(), (src != dst) & valid)
    assert pack['aff_fg_pos_label'].sum() > 0 and pack['aff_neg_label'].sum() > 0
    # with VOC's count (the old hidden default) the class-75 pairs were all ignored
    _, fg_pos, _ = affinity_labels(pack['reduced_label'].numpy(), path_index.src_indices,
                                   path_index.dst_indices, len(VOC12.class_names) + 1)
    assert fg_pos.sum() == 0


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
