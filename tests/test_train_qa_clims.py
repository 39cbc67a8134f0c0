"""train_qa_clims through run_sample.py on the synthetic data with a tiny CLIP:
weights, resume after a kill, DDP with the reference's launcher and flags, the loss
scale of the contrastive sums, up-front checks of VQA entries and caches."""
import json
import os
import subprocess
import sys

import pytest
import torch
from torch.utils.data import default_collate

from conftest import REPO, kill_when, run_sample_cmd
from data.loaders import ClassificationDataset
from net.checkpoint import read_state_dict
from pipeline.qa_clims_inputs import objective_config, text_bank_for, training_clip
from pipeline.stage import build_source
import run_sample
from step.train_qa_clims import build_training, forward_terms
from tools.gen_text_feats_cache import main as gen_cache
from tools.make_tiny_clip import write_tiny_clip


@pytest.fixture(scope='module')
def qa_inputs(tmp_path_factory, demo_voc, clims_reference_weights):
    """Tiny CLIP, the demo dataset's VQA answers and their caches."""
    folder = tmp_path_factory.mktemp('qa')
    clip = write_tiny_clip(str(folder / 'tiny_clip.safetensors'))
    root = demo_voc['root']
    gen_cache(['voc', '--vqa_fg_file', os.path.join(root, 'vqa_fg.json'),
               '--vqa_bg_file', os.path.join(root, 'vqa_bg.json'),
               '--vqa_fg_cache_file', str(folder / 'fg.safetensors'),
               '--vqa_bg_cache_file', str(folder / 'bg.safetensors'), '--clip', clip])
    return {'root': root, 'clip': clip, 'folder': folder, 'cam': str(clims_reference_weights)}


def qa_args(qa, work_space, epochs=2, fg_file=None, clip=None, batch=('--clims_batch_size', '2')):
    return ['--voc12_root', qa['root'], '--work_space', str(work_space), '--device', 'cpu',
            '--num_workers', '0', '--train_list', 'train', '--clims_crop_size', '64',
            '--clims_resize_long', '48,96', *batch,
            '--clims_num_epoches', str(epochs), '--cam_weights_name', qa['cam'],
            '--clip', clip or qa['clip'], '--mask_clip_weights', qa['clip'],
            '--vqa_fg_file', fg_file or os.path.join(qa['root'], 'vqa_fg.json'),
            '--vqa_bg_file', os.path.join(qa['root'], 'vqa_bg.json'),
            '--vqa_fg_cache_file', str(qa['folder'] / 'fg.safetensors'),
            '--vqa_bg_cache_file', str(qa['folder'] / 'bg.safetensors'),
            '--train_qa_clims_pass', 'True']


def test_training_logs_terms_and_feeds_make_clims(tmp_path, qa_inputs):
    run_sample.main(qa_args(qa_inputs, tmp_path, epochs=1) + [
        '--infer_list', 'val', '--cam_scales', '1.0', '--make_clims_pass', 'True'])
    log = (tmp_path / 'run.log').read_text()
    assert 'train_qa_clims epoch 1: loss' in log and 'L_FRC' in log and 'mask-adapted' in log
    weights = read_state_dict(str(tmp_path / 'res50_qa_clims.safetensors'))
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())
    val = json.loads(open(os.path.join(qa_inputs['root'], 'demo_meta.json')).read())['summary']['val']
    assert sorted(os.listdir(tmp_path / 'cams')) == sorted(i + '.npz' for i in val)


def test_plain_clip_variant_runs(tmp_path, qa_inputs):
    run_sample.main(qa_args(qa_inputs, tmp_path, epochs=1) + ['--use_mask_clip', 'False'])
    assert 'plain' in (tmp_path / 'run.log').read_text()


def test_killed_training_resumes_to_the_same_weights(tmp_path, qa_inputs):
    full, killed = tmp_path / 'full', tmp_path / 'killed'
    subprocess.run(run_sample_cmd(*qa_args(qa_inputs, full, epochs=3)), check=True,
                   capture_output=True)
    cmd = run_sample_cmd(*qa_args(qa_inputs, killed, epochs=3))
    state = killed / 'res50_qa_clims.train_state.pt'
    kill_when(cmd, state.exists)
    assert state.exists() and not (killed / 'res50_qa_clims.safetensors').exists()
    result = subprocess.run(cmd, check=True, capture_output=True, text=True)
    assert 'resuming after epoch' in result.stdout
    a = read_state_dict(str(full / 'res50_qa_clims.safetensors'))
    b = read_state_dict(str(killed / 'res50_qa_clims.safetensors'))
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_ddp_training_with_the_reference_launcher_and_flags(tmp_path, qa_inputs):
    """The reference's call: ``python -m torch.distributed.launch --nproc_per_node 2
    run_sample.py --use_distributed_train True --cam_batch_size N --clims_network ...``
    (the launcher adds --local-rank=R); gloo on CPU. --cam_batch_size 1 is the
    per-process batch: global batch 2."""
    reference_flags = ['--use_distributed_train', 'True', '--cam_network', 'net.resnet50_cam',
                       '--clims_network', 'net.resnet50_clims', '--feature_dim', '2048']
    argv = qa_args(qa_inputs, tmp_path, epochs=1, batch=('--cam_batch_size', '1'))
    cmd = [sys.executable, '-m', 'torch.distributed.launch', '--nproc_per_node', '2',
           '--master_port', '29523'] + run_sample_cmd(*argv, *reference_flags)[1:]
    result = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS='1'), capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    log = (tmp_path / 'run.log').read_text()
    assert '--cam_batch_size 1 is the per-process QA-CLIMS batch' in log
    assert 'batch 2 (1 per process), contrastive sums x 4 (--clims_loss_ref_batch 4 / 1)' in log
    run_sample.main(['--voc12_root', qa_inputs['root'], '--work_space', str(tmp_path),
                     '--device', 'cpu', '--num_workers', '0', '--infer_list', 'val',
                     '--cam_scales', '1.0', '--make_clims_pass', 'True'])


def test_contrastive_sums_are_scaled_to_the_reference_batch_per_process(tmp_path, qa_inputs):
    """One process holding 2k images (k = --clims_loss_ref_batch, the reference's 4 per GPU)
    gets the gradient of two k-image processes averaged by DDP, as the reference's 2 GPUs x 4;
    at k images the loss is the reference's per-process loss, unscaled. BatchNorm in eval
    mode makes every image's maps independent of how the batch is split, so the equality
    is exact up to float rounding (the reference's SyncBatchNorm pools the statistics of all
    processes, as one process holding them all does)."""
    args = run_sample.build_parser().parse_args(qa_args(qa_inputs, tmp_path))
    run_sample.resolve_args(args)
    k, device = args.clims_loss_ref_batch, torch.device('cpu')
    source = build_source(args)
    ids = source.ids(args.train_list)[:2 * k]
    assert len(ids) == 2 * k
    clip = training_clip(args, device)
    bank = text_bank_for(source, ids, clip, args, device)
    cfg = objective_config(args, clip)
    dataset = ClassificationDataset(source, ids, crop_size=args.clims_crop_size,
                                    crop_method='top_left')
    model, optimizer, _ = build_training(args, source.n_classes, 1, device)
    params = [q for group in optimizer.param_groups for q in group['params']]
    model.eval()

    def terms_and_gradient(indices):
        model.zero_grad()
        pack = default_collate([dataset[i] for i in indices])
        _, terms = forward_terms(model, pack, clip, bank, cfg)
        terms['loss'].backward()
        return terms, [q.grad.clone() for q in params]

    whole, whole_grad = terms_and_gradient(range(2 * k))
    halves = [terms_and_gradient(range(0, k)), terms_and_gradient(range(k, 2 * k))]
    for terms, _ in halves:
        assert terms['L_FRC'] > 0 and terms['L_BRC'] > 0
        h = cfg.hyper
        torch.testing.assert_close(terms['loss'], h[0] * terms['L_FRC'] + h[1] * terms['L_BRC']
                                   + h[2] * terms['L_REG'])
    torch.testing.assert_close(whole['loss'], (halves[0][0]['loss'] + halves[1][0]['loss']) / 2)
    for q, g, ga, gb in zip(params, whole_grad, halves[0][1], halves[1][1]):
        scale = max(g.abs().max().item(), 1e-12)
        torch.testing.assert_close(g / scale, (ga + gb) / 2 / scale, rtol=0, atol=1e-4)


def test_missing_vqa_entries_are_reported_before_training(tmp_path, qa_inputs):
    fg = json.loads(open(os.path.join(qa_inputs['root'], 'vqa_fg.json')).read())
    train = open(os.path.join(qa_inputs['root'], 'ImageSets', 'Segmentation',
                              'train.txt')).read().split()
    del fg[train[0]], fg[train[1]]
    path = tmp_path / 'fg_partial.json'
    path.write_text(json.dumps(fg))
    with pytest.raises(KeyError, match=r'fg_partial.json has no entry for \d+ of the \d+ .*%s'
                       % train[0]):
        run_sample.main(qa_args(qa_inputs, tmp_path, fg_file=str(path)))
    assert not (tmp_path / 'res50_qa_clims.train_state.pt').exists()


def test_cache_built_with_another_clip_is_refused(tmp_path, qa_inputs):
    other = write_tiny_clip(str(tmp_path / 'other_clip.safetensors'), seed=1)
    with pytest.raises(ValueError, match='fg.safetensors was built with CLIP .* but this run uses'):
        run_sample.main(qa_args(qa_inputs, tmp_path, clip=other))


def test_run_voc12_qa_clims_script_trains_makes_and_evaluates(tmp_path, qa_inputs):
    root = qa_inputs['root']
    env = dict(os.environ, VOC12_ROOT=root, WORK_SPACE=str(tmp_path), PYTHON=sys.executable,
               NUM_WORKERS='0', TRAIN_LIST='train', CAM_WEIGHTS=qa_inputs['cam'],
               CLIP=qa_inputs['clip'], MASK_CLIP_WEIGHTS=qa_inputs['clip'],
               VQA_FG=os.path.join(root, 'vqa_fg.json'), VQA_BG=os.path.join(root, 'vqa_bg.json'),
               VQA_FG_CACHE=str(tmp_path / 'fg.safetensors'),
               VQA_BG_CACHE=str(tmp_path / 'bg.safetensors'), CLIMS_BATCH_SIZE='2',
               CLIMS_NUM_EPOCHES='1', CLIMS_CROP_SIZE='64', CLIMS_RESIZE_LONG='48,96',
               CAM_SCALES='1.0', INFER_LIST='val', CHAINER_EVAL_SET='val',
               OMP_NUM_THREADS='2')
    subprocess.run(['bash', str(REPO / 'run_voc12_qa_clims.sh')], env=env, check=True,
                   capture_output=True)
    assert (tmp_path / 'fg.safetensors').is_file()
    assert (tmp_path / 'res50_qa_clims.safetensors').is_file()
    result = json.loads((tmp_path / 'eval_cam.json').read_text())
    assert result['split'] == 'val' and len(result['sweep']) == 55
