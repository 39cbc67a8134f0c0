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

from conftest import REF, VOC_MINI, dead_pid, run_sample_cmd
from data.loaders import SegmentationTrainDataset
from net.checkpoint import save_weights
from net.deeplab import ARCHITECTURES, DeepLabV2, build_segmentation_model
from net.resnet50 import FixedBatchNorm, estimate_batchnorm_statistics
from pipeline.engine import Optimiser
import run_sample
from step.train_seg import batch_loss, optimizer_for
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
    assert [b.conv2.dilation for b in (model.backbone.layer3[0], model.backbone.layer4[0])] == \
        [(2, 2), (4, 4)]                                 # DeepLab-v2: every block dilated
    arch_flag = next(a for a in run_sample.build_parser()._actions if a.dest == 'seg_arch')
    assert sorted(arch_flag.choices) == sorted(ARCHITECTURES)
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


def test_resnet50_variant_takes_resnet50_weights_and_refuses_resnet101(tmp_path):
    import torchvision
    reference = torchvision.models.resnet50(weights=None)
    path = tmp_path / 'resnet50.pth'
    torch.save({k: v for k, v in reference.state_dict().items() if not k.startswith('fc.')}, path)
    model = build_segmentation_model('deeplabv2_resnet50', 3, str(path))
    assert len(model.backbone.layer3) == 6 and model.backbone.layer3[0].conv2.dilation == (2, 2)
    assert torch.equal(model.backbone.layer3[5].conv2.weight, reference.layer3[5].conv2.weight)
    big = tmp_path / 'resnet101.pth'
    torch.save(torchvision.models.resnet101(weights=None).state_dict(), big)
    with pytest.raises(ValueError, match='not a ResNet-50 state dict'):
        build_segmentation_model('deeplabv2_resnet50', 3, str(big))


def test_a_few_steps_lower_the_loss():
    torch.manual_seed(0)
    source = VOC12(str(VOC_MINI))
    dataset = SegmentationTrainDataset(source, source.ids('trainval'), None, 64)
    model = DeepLabV2(21)
    estimate_batchnorm_statistics(model, (p['img'] for p in DataLoader(dataset, batch_size=6)))
    optimizer = torch.optim.SGD(model.optimizer_groups(2.5e-4, 5e-4), lr=2.5e-4, momentum=0.9)
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
    save_weights(model, str(path), {'arch': 'deeplabv2'})


def test_evaluation_of_known_predictions(tmp_path):
    background_only_weights(tmp_path / 'seg.safetensors')
    run_sample.main(['--voc12_root', str(VOC_MINI), '--work_space', str(tmp_path), '--device',
                     'cpu', '--seg_weights_name', 'seg.safetensors', '--seg_eval_set', 'val',
                     '--seg_eval_scales', '0.5,1.0', '--seg_crf', 'True',
                     '--seg_submission', 'True', '--eval_seg_pass', 'True'])
    result = json.loads((tmp_path / 'eval_seg.json').read_text())
    source = VOC12(str(VOC_MINI))
    val = source.ids('val')
    gts = [source.read_mask(i) for i in val]
    valid = sum(int((g != 255).sum()) for g in gts)
    background = sum(int((g == 0).sum()) for g in gts)
    present = sorted(set(np.unique(np.concatenate([g.ravel() for g in gts]))) - {255})
    expected = (background / valid) / len(present)                  # other classes: IoU 0
    for variant in ('plain', 'crf'):
        assert result[variant]['miou'] == pytest.approx(expected, rel=1e-9)
    submission = tmp_path / 'results' / 'VOC2012' / 'Segmentation' / 'comp6_test_cls'
    assert sorted(os.listdir(submission)) == sorted(i + '.png' for i in val)
    png = Image.open(submission / (val[0] + '.png'))
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
    assert '(at iteration 4)' in (tmp_path / 'run.log').read_text()


def test_train_seg_with_torchrun_gloo(tmp_path):
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
           '--master_port', '29527'] + run_sample_cmd(*seg_args(
            tmp_path, '--seg_label_dir', 'gt', '--seg_iter_size', '2', '--seg_num_iters', '2'))[1:]
    result = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS='1'), capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert '(1 per process) x 2 accumulated' in (tmp_path / 'run.log').read_text()
    assert (tmp_path / 'deeplab_seg.safetensors').is_file()


def test_train_seg_optimizer_groups_and_one_step_with_frozen_batchnorm():
    """train_seg's own optimiser and step: DeepLab's solver groups (backbone convs at
    the lr, ASPP weights 10x, ASPP biases 20x without weight decay), one SGD step
    (momentum 0.9, so the first is p - lr_g * (grad + wd_g * p)), frozen BatchNorm
    parameters and statistics bit-identical afterwards."""
    torch.manual_seed(0)
    args = run_sample.build_parser().parse_args(['--seg_learning_rate', '0.1',
                                                 '--seg_weight_decay', '0.01'])
    model = DeepLabV2(3)
    imgs, labels = torch.randn(2, 3, 33, 33), torch.randint(0, 3, (2, 33, 33))
    estimate_batchnorm_statistics(model, [imgs])
    optimizer, scheduler = optimizer_for(model, args)
    lr, wd = args.seg_learning_rate, args.seg_weight_decay
    assert [(g['lr'], g['weight_decay'], g['momentum']) for g in optimizer.param_groups] == \
        [(lr, wd, 0.9), (10 * lr, wd, 0.9), (20 * lr, 0.0, 0.9)]
    names = {id(p): n for n, p in model.named_parameters()}
    backbone, aspp_weights, aspp_biases = [[names[id(p)] for p in g['params']]
                                           for g in optimizer.param_groups]
    branches = ['aspp.branches.%d' % i for i in range(len(model.aspp.branches))]
    assert aspp_weights == [b + '.weight' for b in branches]
    assert aspp_biases == [b + '.bias' for b in branches]
    batchnorm = {'%s.%s' % (m, k): t.clone() for m, module in model.named_modules()
                 if isinstance(module, FixedBatchNorm) for k, t in module.state_dict().items()}
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert sorted(backbone + aspp_weights + aspp_biases) == sorted(trainable)
    assert not set(trainable) & set(batchnorm) and len(backbone) == 104     # the conv weights
    before = {n: p.detach().clone() for n, p in model.named_parameters()}

    model.train()
    Optimiser(optimizer, scheduler, torch.device('cpu'), grad_clip=args.seg_grad_clip).step(
        model, [{'img': imgs, 'label': labels}], batch_loss)
    params = dict(model.named_parameters())
    for group in optimizer.param_groups:
        for p in group['params']:
            old = before[names[id(p)]]
            expected = old - group['initial_lr'] * (p.grad + group['weight_decay'] * old)
            assert not torch.equal(p, old)
            torch.testing.assert_close(p.detach(), expected, rtol=1e-6,
                                       atol=1e-6 * float(old.abs().max()))
    state = model.state_dict()
    assert all(torch.equal(state[k], t) for k, t in batchnorm.items())
    assert all(torch.equal(params[k], before[k]) for k in params if k in batchnorm)


def deeplab_pytorch_state(n_blocks=(3, 4, 23, 3), aspp_classes=91, prefix='module.base.'):
    """A converted DeepLab initialisation in deeplab-pytorch's layout, built from its
    architecture (MSRA ResNet-101: layer1 = stem, layer2..5 of blocks reduce /
    conv3x3 / increase / shortcut), each tensor filled with a distinct value."""
    def conv_bn(name, cin, cout, k):
        out = {name + '.conv.weight': torch.empty(cout, cin, k, k)}
        for t in ('weight', 'bias', 'running_mean'):
            out['%s.bn.%s' % (name, t)] = torch.empty(cout)
        out[name + '.bn.running_var'] = torch.empty(cout)
        return out
    state = conv_bn('layer1.conv1', 3, 64, 7)
    cin = 64
    for layer, (n, mid) in enumerate(zip(n_blocks, (64, 128, 256, 512)), start=2):
        for i in range(1, n + 1):
            block = 'layer%d.block%d' % (layer, i)
            state.update(conv_bn(block + '.reduce', cin, mid, 1))
            state.update(conv_bn(block + '.conv3x3', mid, mid, 3))
            state.update(conv_bn(block + '.increase', mid, 4 * mid, 1))
            if i == 1:
                state.update(conv_bn(block + '.shortcut', cin, 4 * mid, 1))
            cin = 4 * mid
    for k in range(4):
        state['aspp.c%d.weight' % k] = torch.empty(aspp_classes, 2048, 3, 3)
        state['aspp.c%d.bias' % k] = torch.empty(aspp_classes)
    for value, key in enumerate(sorted(state)):
        state[key].fill_(value / 1000.0 + 0.5)
    return {prefix + k: v for k, v in state.items()}


def test_converted_deeplab_initialisation(tmp_path):
    state = deeplab_pytorch_state()
    path = tmp_path / 'deeplabv1_resnet101.pth'
    torch.save(state, path)
    model = build_segmentation_model('deeplabv2_caffe', 21, str(path))
    b = model.backbone
    pairs = [('layer1.conv1.conv.weight', b.conv1.weight),
             ('layer1.conv1.bn.running_var', b.bn1.running_var),
             ('layer2.block1.shortcut.conv.weight', b.layer1[0].downsample[0].weight),
             ('layer2.block1.shortcut.bn.bias', b.layer1[0].downsample[1].bias),
             ('layer3.block2.conv3x3.conv.weight', b.layer2[1].conv2.weight),
             ('layer4.block23.increase.bn.running_mean', b.layer3[22].bn3.running_mean),
             ('layer5.block3.reduce.conv.weight', b.layer4[2].conv1.weight)]
    for key, tensor in pairs:
        assert torch.equal(tensor, state['module.base.' + key]), key
    assert float(model.aspp.branches[0].bias.detach().abs().sum()) == 0      # ASPP of the file ignored
    assert b.layer2[0].conv1.stride == (2, 2) and b.layer2[0].conv2.stride == (1, 1)
    assert b.maxpool.ceil_mode
    with pytest.raises(ValueError, match='--seg_arch deeplabv2_caffe'):
        build_segmentation_model('deeplabv2', 21, str(path))
    import torchvision
    torchvision_file = tmp_path / 'resnet101.pth'
    torch.save(torchvision.models.resnet101(weights=None).state_dict(), torchvision_file)
    with pytest.raises(ValueError, match='use --seg_arch deeplabv2'):
        build_segmentation_model('deeplabv2_caffe', 21, str(torchvision_file))
    del state['module.base.layer5.block3.reduce.conv.weight']
    torch.save(state, path)
    with pytest.raises(ValueError, match='1 missing keys'):
        build_segmentation_model('deeplabv2_caffe', 21, str(path))


def test_caffe_input_is_bgr_minus_the_caffe_mean():
    from misc.imutils import hwc_to_chw, imagenet_normalize
    from net.deeplab import CAFFE_BGR_MEAN, CaffeInput
    img = np.random.RandomState(0).randint(0, 256, (5, 7, 3)).astype(np.uint8)
    x = torch.from_numpy(hwc_to_chw(imagenet_normalize(img)).copy())[None]
    expected = img[..., ::-1].astype(np.float64) - np.array(CAFFE_BGR_MEAN)
    np.testing.assert_allclose(CaffeInput()(x)[0].permute(1, 2, 0).numpy(), expected, atol=1e-3)


def eval_args(work_space, *extra):
    return ['--voc12_root', str(VOC_MINI), '--work_space', str(work_space), '--device', 'cpu',
            '--seg_weights_name', 'seg.safetensors', '--seg_eval_set', 'trainval',
            '--seg_eval_scales', '1.0', '--eval_seg_pass', 'True'] + list(extra)


def random_seg_weights(path, arch='deeplabv2'):
    torch.manual_seed(3)
    model = build_segmentation_model(arch, 21)
    with torch.no_grad():
        for conv in model.aspp.branches:
            conv.weight.normal_(std=0.05)
    save_weights(model, str(path), {'arch': arch})


def test_eval_seg_sharded_over_two_processes_equals_one(tmp_path):
    single, double = tmp_path / 'single', tmp_path / 'double'
    for ws in (single, double):
        ws.mkdir()
        random_seg_weights(ws / 'seg.safetensors')
    run_sample.main(eval_args(single))
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
           '--master_port', '29531'] + run_sample_cmd(*eval_args(double))[1:]
    result = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS='1'), capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    one = json.loads((single / 'eval_seg.json').read_text())
    two = json.loads((double / 'eval_seg.json').read_text())
    assert one['plain']['confusion'] == two['plain']['confusion']
    assert np.asarray(one['plain']['confusion']).sum() > 0
    assert 'in this process' in (double / 'run.log').read_text()
    assert sorted(os.listdir(single / 'seg_pred')) == sorted(os.listdir(double / 'seg_pred'))


def test_eval_seg_resumes_and_checks_the_architecture(tmp_path):
    random_seg_weights(tmp_path / 'seg.safetensors')
    run_sample.main(eval_args(tmp_path))
    first = json.loads((tmp_path / 'eval_seg.json').read_text())
    n_images = first['n_images']
    os.remove(tmp_path / 'seg_pred' / sorted(os.listdir(tmp_path / 'seg_pred'))[0])
    orphan = tmp_path / 'seg_pred' / ('.x.png.%d.partial' % dead_pid())    # a killed writer's
    orphan.write_bytes(b'half')
    run_sample.main(eval_args(tmp_path))
    assert '%d already predicted, 1 in this process' % (n_images - 1) in \
        (tmp_path / 'run.log').read_text()
    assert not orphan.exists()
    assert json.loads((tmp_path / 'eval_seg.json').read_text())['plain'] == first['plain']
    with pytest.raises(ValueError, match='trained with --seg_arch deeplabv2; evaluate it with'):
        run_sample.main(eval_args(tmp_path, '--seg_arch', 'deeplabv2_caffe'))


def test_mixed_precision_training_and_evaluation(tmp_path):
    run_sample.main(seg_args(tmp_path, '--seg_label_dir', 'gt', '--seg_num_iters', '2',
                             '--seg_msc', 'False', '--amp', 'True'))
    log = (tmp_path / 'run.log').read_text()
    loss = float(log.split('train_seg epoch 1: loss ')[1].split()[0])
    assert np.isfinite(loss)
    os.rename(tmp_path / 'deeplab_seg.safetensors', tmp_path / 'seg.safetensors')
    run_sample.main(eval_args(tmp_path, '--amp', 'True', '--seg_eval_set', 'val', '--seg_msc',
                              'False', '--seg_eval_flip', 'False'))
    result = json.loads((tmp_path / 'eval_seg.json').read_text())
    assert 0 <= result['miou'] <= 1 and len(list((tmp_path / 'seg_pred').glob('*.png'))) == 2


def test_msc_outputs_and_fusion():
    torch.manual_seed(0)
    model = DeepLabV2(21, msc=True)
    with torch.no_grad():
        for conv in model.aspp.branches:
            conv.weight.normal_(std=0.05)
    x = torch.randn(1, 3, 64, 80)
    model.train()
    with torch.no_grad():
        full, half, three_quarters, fused = model(x)
        assert [t.shape[2:] for t in (full, half, three_quarters)] == [(8, 10), (4, 5), (6, 8)]
        up = [F.interpolate(t, (8, 10), mode='bilinear', align_corners=False)
              for t in (half, three_quarters)]
        torch.testing.assert_close(fused, torch.maximum(full, torch.maximum(*up)))
        assert not torch.equal(fused, full)
        model.eval()
        out = model(x)
    torch.testing.assert_close(out, F.interpolate(fused, (64, 80), mode='bilinear',
                                                  align_corners=False))


def test_msc_loss_resizes_labels_like_pil_nearest():
    from net.deeplab import segmentation_loss
    rng = np.random.RandomState(0)
    labels = rng.randint(0, 3, (2, 41, 41))
    labels[:, :5] = 255
    labels = np.concatenate([labels, np.full((2, 41, 55), 255)], axis=2)[:, :, :96]
    logits = [torch.randn(2, 3, *size) for size in ((41, 96), (21, 48), (31, 72), (6, 12),
                                                    (9, 12))]
    expected = 0
    for lg in logits:
        h, w = lg.shape[2:]
        resized = np.stack([np.asarray(Image.fromarray(lab.astype(np.float32)).resize(
            (w, h), resample=Image.NEAREST)) for lab in labels]).astype(np.int64)
        expected += F.cross_entropy(lg, torch.from_numpy(resized), ignore_index=255)
    torch.testing.assert_close(segmentation_loss(logits, torch.from_numpy(labels)), expected)


def test_poly_lr_recomputed_every_ten_iterations():
    from misc.torchutils import stepwise_poly_lr_lambda
    base, max_iter = 2.5e-4, 95
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=base)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer,
                                                  stepwise_poly_lr_lambda(max_iter, 0.9, 10))
    lr, expected, ours = base, [], []
    for iteration in range(1, max_iter + 1):      # deeplab-pytorch: set after each 10th step
        expected.append(lr)
        ours.append(optimizer.param_groups[0]['lr'])
        optimizer.step()
        scheduler.step()
        if iteration % 10 == 0:
            lr = base * (1 - iteration / max_iter) ** 0.9
    np.testing.assert_allclose(ours, expected, rtol=1e-12)


def test_accumulated_micro_batches_give_the_batch_gradient():
    torch.manual_seed(0)
    model = DeepLabV2(3)
    imgs, labels = torch.randn(2, 3, 33, 33), torch.randint(0, 3, (2, 33, 33))
    estimate_batchnorm_statistics(model, [imgs])
    grads = []
    for micro in ([{'img': imgs, 'label': labels}],
                  [{'img': imgs[i:i + 1], 'label': labels[i:i + 1]} for i in range(2)]):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        Optimiser(optimizer, scheduler, torch.device('cpu')).step(model, micro, batch_loss)
        grads.append(model.aspp.branches[2].weight.grad.clone())
    assert grads[0].abs().max() > 0
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-3, atol=1e-3 * grads[0].abs().max())


def test_train_seg_with_accumulation_and_too_few_images(tmp_path):
    run_sample.main(seg_args(tmp_path, '--seg_label_dir', 'gt', '--seg_num_iters', '1',
                             '--seg_iter_size', '2', '--seg_batch_size', '1'))
    assert 'x 2 accumulated' in (tmp_path / 'run.log').read_text()
    with pytest.raises(ValueError, match='fewer than one iteration needs'):
        run_sample.main(seg_args(tmp_path / 'b', '--seg_label_dir', 'gt', '--seg_iter_size',
                                 '50'))


def test_training_rescale_factors_are_drawn_from_the_list(monkeypatch):
    import data.loaders
    drawn = []
    real = data.loaders.imutils.pil_rescale

    def recording(img, scale, order):
        drawn.append(scale)
        return real(img, scale, order)
    monkeypatch.setattr(data.loaders.imutils, 'pil_rescale', recording)
    source = VOC12(str(VOC_MINI))
    dataset = SegmentationTrainDataset(source, source.ids('trainval'), None, 64, (0.5, 2.0))
    for i in range(len(dataset)):
        dataset[i]
    assert set(drawn) == {0.5, 2.0}


def test_deeplabv3_weights_round_trip(tmp_path):
    from net.checkpoint import load_weights
    from net.deeplab import DeepLabV3
    model = build_segmentation_model('deeplabv3', 5)
    assert not any(k.startswith('backbone.') for k in model.state_dict())
    save_weights(model, str(tmp_path / 'v3.safetensors'), {'arch': 'deeplabv3'})
    loaded = load_weights(DeepLabV3(5), str(tmp_path / 'v3.safetensors'))
    assert torch.equal(loaded.backbone.layer4[2].conv3.weight, model.backbone.layer4[2].conv3.weight)


def test_eval_seg_redoes_stale_predictions_and_completes_the_submission(tmp_path):
    random_seg_weights(tmp_path / 'seg.safetensors')
    run_sample.main(eval_args(tmp_path, '--seg_eval_set', 'val'))
    run_sample.main(eval_args(tmp_path, '--seg_eval_set', 'val', '--seg_eval_flip', 'False',
                              '--seg_submission', 'True'))
    log = (tmp_path / 'run.log').read_text()
    assert 'were made with other weights or settings: removed' in log
    val = VOC12(str(VOC_MINI)).ids('val')
    assert log.count('0 already predicted, %d in this process' % len(val)) == 2   # both: all
    submission = tmp_path / 'results' / 'VOC2012' / 'Segmentation' / 'comp6_test_cls'
    assert sorted(os.listdir(submission)) == sorted(i + '.png' for i in val)
    assert json.loads((tmp_path / 'eval_seg.json').read_text())['flip'] is False


def test_eval_seg_refuses_weights_without_architecture_and_bad_flags(tmp_path):
    model = DeepLabV2(21)
    save_weights(model, str(tmp_path / 'seg.safetensors'))
    with pytest.raises(ValueError, match='does not record its architecture'):
        run_sample.main(eval_args(tmp_path))
    with pytest.raises(FileNotFoundError, match='run train_seg first'):
        run_sample.main(eval_args(tmp_path, '--seg_weights_name', 'absent.safetensors'))
    with pytest.raises(SystemExit):
        run_sample.build_parser().parse_args(['--seg_iter_size', '0'])
