"""The demo end to end with tiny settings: results.json, the report page, the tables."""
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import run_demo
from misc.torchutils import autocast_is_fast
from pipeline.report import comparison_table, iou_table
from misc.io import read_label_png
from tools.demo_report import COLUMNS, TILE_MIN, enlarged
from tools.visualize import colorize_label
from voc12.devkit import VOC12

N_AUG, EXTRA_VAL = 3, 2
TINY = ['--n_images', '12', '--n_aug', str(N_AUG), '--extra_val', str(EXTRA_VAL),
        '--epochs', '1', '--crop', '96', '--clims_epochs', '1', '--irn_epochs', '1',
        '--seg_iters', '2', '--seg_crop', '64', '--pretrain_scenes', '10', '--pretrain_steps', '2',
        '--clip_scenes', '10', '--clip_steps', '2', '--device', 'cpu']


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp('demo')
    results = run_demo.main(['--out', str(out), '--random_clip_ablation'] + TINY)
    return out, results


def test_results_json_holds_every_row(demo):
    out, results = demo
    stored = json.loads((out / 'results.json').read_text())
    assert stored == json.loads(json.dumps(results))
    assert stored['seed'] == 0
    for key in ('baseline_cam', 'qa_clims_cam', 'qa_clims_cam_random_clip', 'pseudo_mask',
                'segmentation', 'segmentation_without_crf'):
        row = stored[key]
        assert 0.0 <= row['miou'] <= 1.0
        assert 'background' in row['iou'] and all(0.0 <= v <= 1.0 for v in row['iou'].values())
        present = list(row['iou'].values())
        assert row['miou'] == pytest.approx(sum(present) / len(present))
    assert stored['pseudo_mask']['background_iou'] == stored['pseudo_mask']['iou']['background']
    assert stored['segmentation']['split'] == stored['segmentation_without_crf']['split'] == 'val'
    assert stored['segmentation']['crf'] and not stored['segmentation_without_crf']['crf']
    scored = json.loads((out / 'work_space' / 'eval_seg.json').read_text())
    assert stored['segmentation']['miou'] == pytest.approx(scored['crf']['miou'])
    assert stored['segmentation_without_crf']['miou'] == pytest.approx(scored['plain']['miou'])
    assert stored['mixed_precision'] == autocast_is_fast(torch.device('cpu'))
    assert set(stored['times']) >= {'dataset', 'pretrain_backbone', 'train_tiny_clip',
                                    'random_clip', 'baseline_cam', 'qa_clims_cam',
                                    'qa_clims_cam_random_clip', 'irnet_pseudo_mask',
                                    'segmentation'}
    assert stored['total_seconds'] == pytest.approx(sum(stored['times'].values()))
    assert stored['clip']['random_clip']['steps'] == 0 and stored['clip']['clip']['steps'] == 2


def listed(path):
    with open(path) as f:
        return f.read().split()


def test_irnet_and_deeplab_learn_from_train_aug_and_all_val_images_are_scored(demo):
    out, results = demo
    data = json.loads((out / 'VOC2012' / 'demo_meta.json').read_text())['summary']
    train, val, aug = data['train'], data['val'], data['aug_only']
    assert len(aug) == N_AUG and len(val) == 4 + EXTRA_VAL        # 12 listed: 4 in val
    assert results['segmentation']['n_images'] == len(val)
    assert results['n_train_images'] == len(train)
    shown = val[:run_demo.N_PANELS]
    ws = out / 'work_space'
    assert listed(ws / 'infer_cam.txt') == sorted(train + shown)
    assert listed(ws / 'infer_pseudo_mask.txt') == sorted(train + aug + shown)
    assert {p.stem for p in (ws / 'cams_baseline').iterdir()} == set(train + shown)
    assert {p.stem for p in (ws / 'cams').iterdir()} == set(train + aug + shown)
    assert {p.stem for p in (ws / 'sem_seg').iterdir()} == set(train + aug + shown)
    log = (ws / 'run.log').read_text()
    for stage in ('train_cam', 'train_qa_clims'):
        assert '%s: %d images' % (stage, len(train)) in log
    for stage in ('train_irn', 'train_seg'):
        assert '%s: %d images' % (stage, len(train) + N_AUG) in log


def test_report_page_is_static_with_tables_legend_and_large_tiles(demo):
    out, results = demo
    page = (out / 'report.html').read_text()
    assert '<script' not in page.lower()
    for title in ('baseline CAM', 'QA-CLIMS CAM', 'pseudo mask', 'segmentation', 'without CRF',
                  'QA-CLIMS CAM, random CLIP', 'Stage times'):
        assert title in page
    for name in results['pseudo_mask']['iou']:
        assert name in page                            # the legend and the tables name them
    assert page.count('<img ') == 4 * len(COLUMNS)
    panels = sorted((out / 'panels').glob('*.png'))
    assert len(panels) == 4
    for folder in (p.with_suffix('') for p in panels):
        tiles = sorted(folder.glob('*.png'))
        assert len(tiles) == len(COLUMNS)
        sizes = {Image.open(t).size for t in tiles}
        assert len(sizes) == 1 and min(next(iter(sizes))) >= TILE_MIN
        assert 'src="panels/%s/' % folder.name in page
        crf = read_label_png(str(out / 'work_space' / 'seg_pred_crf' / (folder.name + '.png')))
        shown = enlarged(colorize_label(crf, VOC12.palette), True)   # the row the table scores
        assert (np.asarray(Image.open(folder / 'segmentation.png').convert('RGB')) == shown).all()
    log = (out / 'work_space' / 'run.log').read_text()
    assert 'report page: %s' % (out / 'report.html').resolve() in log

def test_iou_table_marks_and_skips_absent_classes():
    table = iou_table(['background', 'cat', 'dog'], [0.5, math.nan, 0.25], 0.375)
    assert '-' in table.splitlines()[2] and '37.50' in table.splitlines()[-1]
    short = iou_table(['background', 'cat', 'dog'], [0.5, None, 0.25], 0.375, skip_absent=True)
    assert 'cat' not in short and 'dog' in short


def test_comparison_table_rows():
    columns = [('CAM', [0.5, None, 0.25], 0.375), ('pseudo mask', [0.6, None, 0.2], 0.4)]
    table = comparison_table(['background', 'cat', 'dog'], columns)
    lines = table.splitlines()
    assert 'pseudo mask' in lines[0] and len(lines) == 4
    assert lines[-1].split() == ['mIoU', '37.50', '40.00']


def test_bench_table_gives_mean_std_per_seed_values_and_targets(demo):
    from bench.bench_method import ROWS, table, targets
    _, results = demo
    other = json.loads(json.dumps(results))
    other['seed'], other['qa_clims_cam']['miou'] = 1, results['baseline_cam']['miou'] + 0.1
    lines = table([results, other]).splitlines()
    assert lines[0] == '| | mean +- std | seed 0 | seed 1 |'
    assert len(lines) == 2 + len(ROWS) + len(targets(results))
    qa = next(line for line in lines if line.startswith('| QA-CLIMS CAM mIoU'))
    values = [100 * results['qa_clims_cam']['miou'], 100 * other['qa_clims_cam']['miou']]
    mean = sum(values) / 2
    std = abs(values[0] - values[1]) / 2 ** 0.5
    assert qa == '| QA-CLIMS CAM mIoU (train) | %.1f +- %.1f | %.1f | %.1f |' % (
        mean, std, values[0], values[1])
    assert targets(other)['QA-CLIMS >= baseline + 5']
    assert '| target: QA-CLIMS >= baseline + 5 |' in '\n'.join(lines)


def test_demo_settings_reach_the_stages_and_leave_the_recipe_alone(tmp_path):
    from run_sample import build_parser, resolve_args
    opts = run_demo.demo_parser().parse_args(['--out', str(tmp_path), '--seed', '4'])
    files = {'backbone': 'backbone.pth', 'clip': 'clip.safetensors'}
    demo = run_demo.demo_arguments(opts, str(tmp_path / 'VOC2012'), files,
                                   run_demo.QA_CLIMS_STAGES, 'cams')
    assert (demo.hyper, demo.clims_learning_rate, demo.nce_t) == (opts.hyper, opts.clims_lr, 0.7)
    assert (demo.conf_fg_thres, demo.conf_bg_thres, demo.exp_times) == (
        opts.conf_fg, opts.conf_bg, opts.exp_times)
    assert demo.seed == 4 and demo.imagenet_weights == 'backbone.pth'
    assert demo.mask_clip_weights == 'clip.safetensors' and demo.train_qa_clims_pass
    recipe = build_parser().parse_args(['--voc12_root', str(tmp_path)])
    resolve_args(recipe)
    assert (recipe.hyper, recipe.clims_learning_rate, recipe.nce_t) == ('10,8,0.2', 3.5e-4, 0.7)
    assert (recipe.conf_fg_thres, recipe.conf_bg_thres, recipe.exp_times) == (0.30, 0.10, 8)
    assert opts.hyper != recipe.hyper       # the demo's own value, documented in the README


def test_mixed_precision_reaches_every_stage_where_it_is_faster(tmp_path):
    files = {'backbone': 'backbone.pth', 'clip': 'clip.safetensors'}
    stage_sets = (run_demo.BASELINE_STAGES, run_demo.QA_CLIMS_STAGES, run_demo.IRNET_STAGES,
                  run_demo.SEG_STAGES)
    auto = run_demo.demo_parser().parse_args(['--out', str(tmp_path), '--device', 'cpu'])
    assert run_demo.demo_amp(auto) == autocast_is_fast(torch.device('cpu'))
    for flag, expected in (('True', True), ('False', False)):
        opts = run_demo.demo_parser().parse_args(['--out', str(tmp_path), '--amp', flag])
        assert run_demo.demo_amp(opts) is expected
        for stages in stage_sets:
            args = run_demo.demo_arguments(opts, str(tmp_path), files, stages, 'cams')
            assert args.amp is expected and all(getattr(args, s + '_pass') for s in stages)


def test_models_are_made_once_and_redone_when_their_arguments_or_settings_change(tmp_path):
    calls = []

    def make(path, seed, scenes):
        calls.append((seed, scenes))
        with open(path, 'w') as f:
            f.write('weights')
        return {'seed': seed, 'scenes': scenes}

    clock = run_demo.StageClock()
    path = str(tmp_path / 'model.pth')
    assert run_demo.made_once(path, clock, 'make', make, 0, 10) == {'seed': 0, 'scenes': 10}
    assert run_demo.made_once(path, clock, 'make', make, 0, 10) == {'seed': 0, 'scenes': 10}
    assert calls == [(0, 10)] and list(clock.times) == ['make']
    assert run_demo.made_once(path, clock, 'make', make, 0, 20) == {'seed': 0, 'scenes': 20}
    assert calls == [(0, 10), (0, 20)]
    settings = {'crop_focus': 6.0}
    run_demo.made_once(path, clock, 'make', make, 0, 20, settings=settings)
    assert calls == [(0, 10), (0, 20), (0, 20)]      # made by a maker with other settings
    run_demo.made_once(path, clock, 'make', make, 0, 20, settings=settings)
    run_demo.made_once(path, clock, 'make', make, 0, 20, settings={'crop_focus': 3.0})
    assert calls == [(0, 10), (0, 20), (0, 20), (0, 20)]


def stand_in_maker(calls, name):
    """A model maker that writes a file at its path and records ``(name, *args)``."""
    def make(path, *args):
        calls.append((name,) + args)
        with open(path, 'w') as f:
            f.write(name)
        return {'path': path}
    return make


def test_models_of_another_world_are_made_again(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(run_demo, 'pretrain_backbone', stand_in_maker(calls, 'backbone'))
    monkeypatch.setattr(run_demo, 'train_tiny_clip', stand_in_maker(calls, 'clip'))
    opts = run_demo.demo_parser().parse_args(['--out', str(tmp_path)])
    run_demo.prepare_models(opts, [0, 14], run_demo.StageClock())
    run_demo.prepare_models(opts, [0, 14], run_demo.StageClock())
    assert [c[0] for c in calls] == ['backbone', 'clip']
    monkeypatch.setattr('tools.make_demo_voc.STRAY_PROBABILITY', 0.0)
    run_demo.prepare_models(opts, [0, 14], run_demo.StageClock())
    assert [c[0] for c in calls] == ['backbone', 'clip', 'backbone', 'clip']


def test_the_backbone_is_pretrained_in_the_demos_precision_and_remade_when_it_changes(
        tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(run_demo, 'pretrain_backbone', stand_in_maker(calls, 'backbone'))
    monkeypatch.setattr(run_demo, 'train_tiny_clip', stand_in_maker(calls, 'clip'))
    for flag in ('True', 'True', 'False', 'auto'):
        opts = run_demo.demo_parser().parse_args(['--out', str(tmp_path), '--amp', flag])
        run_demo.prepare_models(opts, [0, 14], run_demo.StageClock())
    pretrained_with = [c[4] for c in calls if c[0] == 'backbone']   # (seed, scenes, steps, amp)
    fast = autocast_is_fast(torch.device('cpu'))     # the pretraining runs on the CPU
    assert pretrained_with == [True, False] + ([True] if fast else [])


def requirement_names(path):
    """Package names a requirements file lists (comments, includes and pins left out)."""
    with open(path) as f:
        lines = [line.split('#')[0].strip() for line in f]
    return {re.split('[=<>~ ]', line)[0] for line in lines if line and not line.startswith('-')}


def test_demo_imports_only_what_requirements_demo_installs():
    """demo.sh installs requirements-demo.txt only: the demo and its stages' modules import
    with the packages requirements.txt adds (BLIP's transformers, COCO, ...) made absent."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    demo_names = requirement_names(os.path.join(repo, 'requirements-demo.txt'))
    absent = tuple(sorted(requirement_names(os.path.join(repo, 'requirements.txt'))))
    assert demo_names >= {'torch', 'torchvision', 'open_clip_torch', 'pydensecrf2', 'safetensors'}
    assert set(absent) >= {'transformers', 'pycocotools'} and not demo_names & set(absent)
    with open(os.path.join(repo, 'requirements.txt')) as f:
        assert '-r requirements-demo.txt' in f.read().splitlines()
    stages = (run_demo.BASELINE_STAGES + run_demo.QA_CLIMS_STAGES + run_demo.IRNET_STAGES
              + run_demo.SEG_STAGES)
    code = ('import importlib, sys\n'
            'class Absent:\n'
            '    def find_spec(self, name, path=None, target=None):\n'
            '        if name.split(".")[0] in %r: raise ImportError("absent: " + name)\n'
            'sys.meta_path.insert(0, Absent())\n'
            'import run_demo, run_sample\n'
            'for stage in %r:\n'
            '    importlib.import_module(run_sample.STAGE_MODULES.get(stage, "step." + stage))\n'
            'print("imported")' % (absent, stages))
    run = subprocess.run([sys.executable, '-c', code], cwd=repo, capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip() == 'imported', run.stderr


def test_rw_bound_draws_ground_truth_boundaries_on_the_smaller_label_s_side_and_on_void():
    import numpy as np
    from bench.bench_rw_bound import ground_truth_boundary
    mask = np.array([[0, 2, 2, 1, 1],
                     [0, 2, 2, 1, 1],
                     [255, 0, 0, 0, 0]], np.uint8)
    edge = ground_truth_boundary(mask, (3, 4), stride=1)
    assert edge.shape == (1, 3, 4)
    assert edge[0].tolist() == [[1, 0, 0, 1], [1, 0, 0, 1], [1, 1, 1, 1]]
    strided = np.kron(mask, np.ones((4, 4), np.uint8))
    assert torch.equal(ground_truth_boundary(strided, (3, 5)), ground_truth_boundary(mask, (3, 5), 1))


def test_rw_bound_with_the_run_s_irnet_reproduces_its_pseudo_masks(demo):
    import argparse
    from bench.bench_rw_bound import bound_table
    out, _ = demo
    ws = out / 'work_space'
    run_args = argparse.Namespace(**json.loads((ws / 'run_args.json').read_text()))
    confusions = bound_table(run_args, [run_args.exp_times], [run_args.sem_seg_bg_thres])
    scored = json.loads((ws / 'eval_sem_seg.json').read_text())['confusion']
    key = (run_args.exp_times, run_args.sem_seg_bg_thres)
    assert confusions[('IRNet',) + key].tolist() == scored
    assert confusions[('ground truth',) + key].tolist() != scored
    assert set(confusions) == {('IRNet',) + key, ('ground truth',) + key}
