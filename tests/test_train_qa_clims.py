"""train_qa_clims through run_sample.py on the synthetic data with a tiny CLIP:
weights, resume after a kill, DDP, up-front checks of VQA entries and caches."""
import json
import os
import subprocess
import sys

import pytest
import torch

import run_sample
from conftest import kill_when, run_sample_cmd
from net.checkpoint import read_state_dict
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


def qa_args(qa, work_space, epochs=2, fg_file=None, clip=None):
    return ['--voc12_root', qa['root'], '--work_space', str(work_space), '--device', 'cpu',
            '--num_workers', '0', '--train_list', 'train', '--cam_crop_size', '64',
            '--cam_resize_long', '48,96', '--clims_batch_size', '2',
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


def test_ddp_training_with_torchrun_gloo(tmp_path, qa_inputs):
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
           '--master_port', '29523'] + run_sample_cmd(*qa_args(qa_inputs, tmp_path, epochs=1))[1:]
    result = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS='1'), capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert '(1 per process)' in (tmp_path / 'run.log').read_text()
    run_sample.main(['--voc12_root', qa_inputs['root'], '--work_space', str(tmp_path),
                     '--device', 'cpu', '--num_workers', '0', '--infer_list', 'val',
                     '--cam_scales', '1.0', '--make_clims_pass', 'True'])


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
    from conftest import REPO
    root = qa_inputs['root']
    env = dict(os.environ, VOC12_ROOT=root, WORK_SPACE=str(tmp_path), PYTHON=sys.executable,
               NUM_WORKERS='0', TRAIN_LIST='train', CAM_WEIGHTS=qa_inputs['cam'],
               CLIP=qa_inputs['clip'], MASK_CLIP_WEIGHTS=qa_inputs['clip'],
               VQA_FG=os.path.join(root, 'vqa_fg.json'), VQA_BG=os.path.join(root, 'vqa_bg.json'),
               VQA_FG_CACHE=str(tmp_path / 'fg.safetensors'),
               VQA_BG_CACHE=str(tmp_path / 'bg.safetensors'), BATCH_SIZE='2', EPOCHS='1',
               CROP_SIZE='64', CAM_SCALES='1.0', EVAL_SET='val', OMP_NUM_THREADS='2')
    subprocess.run(['bash', str(REPO / 'run_voc12_qa_clims.sh')], env=env, check=True,
                   capture_output=True)
    assert (tmp_path / 'fg.safetensors').is_file()
    assert (tmp_path / 'res50_qa_clims.safetensors').is_file()
    result = json.loads((tmp_path / 'eval_cam.json').read_text())
    assert result['split'] == 'val' and len(result['sweep']) == 55
