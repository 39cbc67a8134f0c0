"""The demo: the method on a synthetic world, on CPU (README: the demo).

    python run_demo.py [--out demo_out] [--seed 0] [--device auto]

1. a synthetic VOC-layout dataset whose classes co-occur with their own
   background regions (which also stray into images without them) and carry
   a small discriminative part, with VQA
   answers naming what was drawn (tools/make_demo_voc.py);
2. a short ResNet-50 pretraining on other scenes of that world, standing in
   for ImageNet (tools/pretrain_backbone.py), reused by train_cam, IRNet and
   the segmentation network (DeepLab-v2 on that ResNet-50: ``--seg_arch
   deeplabv2_resnet50``, lighter than the paper's ResNet-101);
3. a tiny CLIP trained on that world (tools/train_tiny_clip.py;
   ``--random_clip_ablation`` also runs QA-CLIMS with the same network
   untrained, from the same baseline);
4. baseline CAMs, QA-CLIMS CAMs, IRNet pseudo masks, the segmentation network,
   each evaluated (CAMs and pseudo masks on train, the segmentation on val);
   the CAM networks learn from train, IRNet and DeepLab from train_aug (train
   and ``--n_aug`` images with image-level labels only, :func:`demo_lists`).

Writes ``<out>/results.json`` (every row's mIoU and per-class IoU, the seed,
the time of each stage) and ``<out>/report.html`` (tables, stage times and
panels image | baseline CAM | QA-CLIMS CAM | pseudo mask | segmentation | GT
of val images, PNGs in ``<out>/panels``), and prints the page's path.
The demo's settings (small crops and batches, more epochs than the recipe's,
the thresholds below) are for this world only: the recipe's defaults for real
runs are those of run_sample.py.
"""
import argparse
import json
import math
import os
import time

import torch

from misc.io import atomic_write
from misc.dist import resolve_device
from misc.logutil import get_logger, setup_logging
from misc.torchutils import autocast_is_fast
from pipeline.report import comparison_table
from pipeline.stage import build_source
from run_sample import build_parser, run_stages
from tools.demo_report import write_panels, write_report
from tools.gen_text_feats_cache import main as gen_text_feats_cache
from tools.make_demo_voc import generate_demo_voc, world_settings, write_id_list
from tools.pretrain_backbone import pretrain_backbone
from tools.train_tiny_clip import accuracy_summary, tiny_clip_settings, train_tiny_clip

BASELINE_STAGES = ('train_cam', 'make_cam', 'eval_cam')
QA_CLIMS_STAGES = ('train_qa_clims', 'make_clims', 'eval_cam')
IRNET_STAGES = ('cam_to_ir_label', 'train_irn', 'make_sem_seg', 'eval_sem_seg')
SEG_STAGES = ('train_seg', 'eval_seg')
N_PANELS = 4
BASELINE_CAMS = 'cams_baseline'


def demo_arguments(opts, voc_root, files, stages, cams, tag='', lists=('train', 'trainval')):
    """run_sample arguments of the demo's stages: small crops and batches for a CPU, mixed
    precision as :func:`demo_amp` says; ``tag`` names the QA-CLIMS weights and text features
    of another CLIP, ``lists`` are the train and infer lists (:func:`demo_lists`)."""
    ws = os.path.join(opts.out, 'work_space')
    train_list, infer_list = lists
    argv = [
        '--voc12_root', voc_root, '--work_space', ws, '--amp', str(demo_amp(opts)),
        '--device', opts.device, '--num_workers', str(opts.num_workers), '--seed', str(opts.seed),
        '--train_list', train_list, '--val_list', '', '--infer_list', infer_list,
        '--chainer_eval_set', 'train', '--cam_out_dir', cams,
        '--imagenet_weights', files['backbone'],
        '--cam_batch_size', '8', '--cam_num_epoches', str(opts.epochs),
        '--cam_learning_rate', str(opts.lr), '--cam_crop_size', str(opts.crop),
        '--cam_resize_long', '%d,%d' % (opts.crop * 3 // 4, opts.crop * 5 // 4),
        '--cam_scales', '1.0,0.5,1.5', '--eval_cam_best', 'True',
        '--clims_batch_size', '8', '--clims_num_epoches', str(opts.clims_epochs),
        '--clims_learning_rate', str(opts.clims_lr), '--nce_t', str(opts.nce_t),
        '--hyper', opts.hyper,
        '--clims_crop_size', str(opts.crop),
        '--clims_resize_long', '%d,%d' % (opts.crop * 3 // 4, opts.crop * 5 // 4),
        '--clip', files['clip'], '--mask_clip_weights', files['clip'],
        '--vqa_fg_file', os.path.join(voc_root, 'vqa_fg.json'),
        '--vqa_bg_file', os.path.join(voc_root, 'vqa_bg.json'),
        '--vqa_fg_cache_file', os.path.join(ws, 'vqa_fg_cache%s.safetensors' % tag),
        '--vqa_bg_cache_file', os.path.join(ws, 'vqa_bg_cache%s.safetensors' % tag),
        '--clims_weights_name', 'res50_qa_clims%s.safetensors' % tag,
        '--conf_fg_thres', str(opts.conf_fg), '--conf_bg_thres', str(opts.conf_bg),
        '--irn_crop_size', str(opts.crop), '--irn_batch_size', '8',
        '--irn_num_epoches', str(opts.irn_epochs), '--beta', str(opts.beta),
        '--exp_times', str(opts.exp_times), '--sem_seg_bg_thres', str(opts.sem_seg_bg),
        '--sem_seg_color', 'True',
        '--seg_arch', 'deeplabv2_resnet50', '--seg_backbone_weights', files['backbone'],
        '--seg_train_list', train_list, '--seg_label_dir', 'sem_seg', '--seg_batch_size', '4',
        '--seg_crop_size', str(opts.seg_crop), '--seg_num_iters', str(opts.seg_iters),
        '--seg_learning_rate', str(opts.seg_lr), '--seg_msc', 'False',
        '--seg_grad_clip', '10', '--seg_eval_set', 'val', '--seg_eval_scales', '1.0',
        '--seg_eval_flip', 'True', '--seg_crf', 'True']
    for stage in stages:
        argv += ['--%s_pass' % stage, 'True']
    return build_parser().parse_args(argv)


def demo_lists(opts, data):
    """{'baseline', 'qa_clims', 'irnet': (train list, infer list)} of the demo's stages.

    The CAM networks train on ``train``. With ``--n_aug`` images that have image-level
    labels only (the role of the recipe's train_aug beyond train), IRNet and DeepLab learn
    from the pseudo masks of ``train_aug`` (train and those images). CAMs and pseudo masks
    are made for the images learned from and for the val images of the panels, listed in
    ``<out>/work_space/infer_*.txt``; the other val images are for DeepLab's evaluation only.
    """
    shown = data['val'][:N_PANELS]
    aug = data['aug_only']
    cam_list = os.path.join(opts.out, 'work_space', 'infer_cam.txt')
    write_id_list(cam_list, data['train'] + shown)
    pseudo_list = cam_list
    if aug:
        pseudo_list = os.path.join(opts.out, 'work_space', 'infer_pseudo_mask.txt')
        write_id_list(pseudo_list, data['train'] + aug + shown)
    return {'baseline': ('train', cam_list), 'qa_clims': ('train', pseudo_list),
            'irnet': ('train_aug' if aug else 'train', pseudo_list)}


def text_feature_caches(args):
    """Encode the synthetic VQA answers with the tiny CLIP (docs/method.md#text-features)."""
    gen_text_feats_cache(['voc', '--vqa_fg_file', args.vqa_fg_file, '--vqa_bg_file',
                          args.vqa_bg_file, '--vqa_fg_cache_file', args.vqa_fg_cache_file,
                          '--vqa_bg_cache_file', args.vqa_bg_cache_file, '--clip', args.clip])


def per_class(label_names, iou):
    """{class name: IoU} of the classes present (absent ones, NaN, left out)."""
    return {n: v for n, v in zip(label_names, iou) if v is not None and not math.isnan(v)}


def row(label_names, result):
    return {'miou': result['miou'], 'iou': per_class(label_names, result['iou'])}


def demo_results(source, opts, model_info, baseline, qa, sem, seg, times):
    """The content of results.json (``model_info``: what the pretraining and the tiny-CLIP
    training reported)."""
    names = source.label_names
    pseudo = row(names, sem)
    pseudo['background_iou'] = sem['iou'][0]
    clip = {k: v for k, v in model_info.items() if k != 'backbone'}
    return {'seed': opts.seed, 'clip': clip, 'pretraining': model_info['backbone'],
            'baseline_cam': dict(row(names, baseline), best=baseline['best']),
            'qa_clims_cam': dict(row(names, qa), best=qa['best']),
            'pseudo_mask': pseudo,
            'segmentation': dict(row(names, seg['crf']), split='val', n_images=seg['n_images'],
                                 crf=True),
            'segmentation_without_crf': dict(row(names, seg['plain']), split='val',
                                             n_images=seg['n_images'], crf=False),
            'mixed_precision': demo_amp(opts),
            'n_train_images': baseline['n_images'],
            'times': times, 'total_seconds': sum(times.values())}


def console_tables(source, results):
    """The train-split table (CAMs, pseudo masks) and the val-split table (segmentation,
    scored after the dense CRF and without it)."""
    names = source.label_names

    def column(title, key):
        r = results[key]
        return title, [r['iou'].get(n) for n in names], r['miou']
    return (comparison_table(names, [column('baseline CAM', 'baseline_cam'),
                                     column('QA-CLIMS CAM', 'qa_clims_cam'),
                                     column('pseudo mask', 'pseudo_mask')]),
            comparison_table(names, [column('segmentation', 'segmentation'),
                                     column('without CRF', 'segmentation_without_crf')]))


class StageClock:
    """Wall time of each named part of the demo."""

    def __init__(self):
        self.times = {}

    def run(self, name, fn, *args):
        start = time.time()
        result = fn(*args)
        self.times[name] = round(time.time() - start, 1)
        get_logger().info('demo: %s done in %.1f s', name, self.times[name])
        return result


def made_once(path, clock, name, make, *args, settings=None):
    """Run ``make(path, *args)`` (timed as ``name``) unless ``path`` exists with a ``.json``
    record made from the same ``args`` and the same ``settings`` (the maker's fixed
    constants, so that a file made by an older version is made again); returns what
    ``make`` returned."""
    record_path = path + '.json'
    made_with = json.loads(json.dumps({'args': list(args), 'settings': settings}))
    record = None
    if os.path.isfile(path) and os.path.isfile(record_path):
        with open(record_path) as f:
            record = json.load(f)
    if record is None or record.get('made_with') != made_with:
        record = {'made_with': made_with, 'info': clock.run(name, make, path, *args)}
        with atomic_write(record_path, 'w') as f:
            json.dump(record, f, indent=1)
    return record['info']


def prepare_models(opts, class_ids, clock):
    """The pretrained backbone and the tiny CLIPs (trained; untrained for the ablation):
    ({'backbone', 'clip', 'random_clip': path}, {'backbone', 'clip', 'random_clip': what
    their tools report}); files made earlier with the same seed and steps, in the same
    world (:func:`tools.make_demo_voc.world_settings`), are reused."""
    files = {'backbone': os.path.join(opts.out, 'pretrained_res50_seed%d_steps%d.pth'
                                      % (opts.seed, opts.pretrain_steps))}
    infos = {'backbone': made_once(files['backbone'], clock, 'pretrain_backbone',
                                   pretrain_backbone, opts.seed, opts.pretrain_scenes,
                                   opts.pretrain_steps, demo_amp(opts, torch.device('cpu')),
                                   settings={'world': world_settings()})}
    kinds = ('clip', 'random_clip') if opts.random_clip_ablation else ('clip',)
    for kind in kinds:
        steps = opts.clip_steps if kind == 'clip' else 0
        files[kind] = os.path.join(opts.out, 'tiny_clip_seed%d_steps%d.safetensors'
                                   % (opts.seed, steps))
        infos[kind] = made_once(files[kind], clock, 'train_tiny_clip' if steps else 'random_clip',
                                train_tiny_clip, class_ids, opts.seed, opts.clip_scenes, steps,
                                settings=dict(tiny_clip_settings(), world=world_settings()))
    return files, infos


def qa_clims_with(opts, voc_root, files, lists, clock, name, cams, tag=''):
    """Text features and QA-CLIMS CAMs (trained, inferred, evaluated) with ``files['clip']``."""
    args = demo_arguments(opts, voc_root, files, QA_CLIMS_STAGES, cams, tag, lists=lists)
    clock.run('text_features' + tag, text_feature_caches, args)
    return args, clock.run(name, run_stages, args)['eval_cam']


def demo_amp(opts, device=None):
    """``--amp``, mixed precision in every network the demo trains (the backbone's
    pretraining, the CAM networks, IRNet, DeepLab) on ``device`` (default ``--device``; the
    pretraining runs on the CPU): 'auto' is on where it is faster (CUDA, or a CPU with bf16
    kernels: on this project's 2-core AVX512-BF16 machine 1.5x per pretraining step, 1.5x
    per baseline step, 1.9x per QA-CLIMS step and 1.8x per DeepLab step)."""
    if opts.amp == 'auto':
        return autocast_is_fast(device or resolve_device(opts.device))
    return opts.amp == 'True'


def save_results(path, results):
    with atomic_write(path, 'w') as f:
        json.dump(results, f, indent=1)
    return path


def demo_parser():
    """The demo's options (its defaults are the demo's settings, not the recipe's)."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', default='demo_out')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--random_clip_ablation', action='store_true',
                   help='also run QA-CLIMS with the tiny CLIP untrained (bench/bench_method.py)')
    p.add_argument('--pretrain_scenes', type=int, default=200)
    p.add_argument('--pretrain_steps', type=int, default=150)
    p.add_argument('--clip_scenes', type=int, default=240)
    p.add_argument('--clip_steps', type=int, default=300)
    p.add_argument('--n_images', type=int, default=40)
    p.add_argument('--n_aug', type=int, default=54,
                   help='images with image-level labels only, beyond the listed ones (the role '
                        "of the recipe's train_aug): IRNet and DeepLab learn from their pseudo "
                        'masks too')
    p.add_argument('--extra_val', type=int, default=40,
                   help='val images beyond a third of --n_images, for a steadier segmentation '
                        'figure (drawn apart: the train images do not change with it)')
    p.add_argument('--max_classes', type=int, default=6)
    p.add_argument('--crop', type=int, default=128)
    p.add_argument('--epochs', type=int, default=20)
    p.add_argument('--lr', type=float, default=0.1)
    p.add_argument('--clims_epochs', type=int, default=45)
    p.add_argument('--clims_lr', type=float, default=3e-3,
                   help='backbone lr of QA-CLIMS (the recipe: 3.5e-4; the classifier at 10x). '
                        'At 1e-2 a present class was lost on half the runs (README: the demo)')
    p.add_argument('--nce_t', type=float, default=0.7)
    p.add_argument('--hyper', default='10,8,5',
                   help='weights of L_FRC, L_BRC, L_REG (the recipe: 10,8,0.2 on VOC). From this '
                        "world's short pretraining the maps start saturated at 1 over the whole "
                        'image, where the contrastive terms have no gradient; the stronger area '
                        'term brings them back (README: the demo)')
    p.add_argument('--conf_fg', type=float, default=0.50,
                   help='IRNet confident-region thresholds (the recipe: 0.30 and 0.10)')
    p.add_argument('--conf_bg', type=float, default=0.15)
    p.add_argument('--irn_epochs', type=int, default=4,
                   help='epochs over train_aug (81 images with the default --n_aug)')
    p.add_argument('--beta', type=float, default=10)
    p.add_argument('--exp_times', type=int, default=2)
    p.add_argument('--sem_seg_bg', type=float, default=0.25)
    p.add_argument('--seg_iters', type=int, default=150)
    p.add_argument('--seg_crop', type=int, default=96)
    p.add_argument('--seg_lr', type=float, default=5e-3)
    p.add_argument('--amp', default='auto', choices=('auto', 'True', 'False'),
                   help='every network the demo trains (pretraining, CAM networks, IRNet, '
                        'DeepLab) under mixed precision (run_sample --amp: bf16 on CPU, fp16 '
                        'on CUDA); auto: where it is faster')
    p.add_argument('--device', default='auto')
    p.add_argument('--num_workers', type=int, default=0)
    return p


def main(argv=None):
    opts = demo_parser().parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    setup_logging(os.path.join(opts.out, 'work_space'))
    clock = StageClock()
    data = clock.run('dataset', generate_demo_voc, os.path.join(opts.out, 'VOC2012'),
                     opts.n_images, opts.seed, opts.n_aug > 0, 96, 192, opts.max_classes,
                     opts.n_aug, opts.extra_val)
    class_ids = sorted({c for i in data['train'] for c in data['labels'][i]})
    files, model_info = prepare_models(opts, class_ids, clock)
    lists = demo_lists(opts, data)
    baseline = clock.run('baseline_cam', run_stages, demo_arguments(
        opts, data['root'], files, BASELINE_STAGES, BASELINE_CAMS,
        lists=lists['baseline']))['eval_cam']
    ablation = None
    if opts.random_clip_ablation:
        _, ablation = qa_clims_with(opts, data['root'], dict(files, clip=files['random_clip']),
                                    lists['baseline'], clock, 'qa_clims_cam_random_clip',
                                    'cams_random_clip', '_random_clip')
    args, qa = qa_clims_with(opts, data['root'], files, lists['qa_clims'], clock, 'qa_clims_cam',
                             'cams')
    sem = clock.run('irnet_pseudo_mask', run_stages, demo_arguments(
        opts, data['root'], files, IRNET_STAGES, 'cams', lists=lists['irnet']))['eval_sem_seg']
    seg = clock.run('segmentation', run_stages, demo_arguments(
        opts, data['root'], files, SEG_STAGES, 'cams', lists=lists['irnet']))['eval_seg']
    source = build_source(args)
    results = demo_results(source, opts, model_info, baseline, qa, sem, seg, clock.times)
    if ablation is not None:
        results['qa_clims_cam_random_clip'] = dict(row(source.label_names, ablation),
                                                   best=ablation['best'])
    panels = write_panels(source, data['val'][:N_PANELS], args, BASELINE_CAMS, opts.out)
    results_path = save_results(os.path.join(opts.out, 'results.json'), results)
    page = write_report(os.path.join(opts.out, 'report.html'), source, results, panels)
    train_table, val_table = console_tables(source, results)
    log = get_logger()
    log.info('\nDemo results (seed %d), train split (%d images):\n%s\npseudo-mask background IoU '
             '%.2f%%\nSegmentation network (DeepLab-v2 ResNet-50) on the val split (%d images):'
             '\n%s\nTiny CLIP zero-shot accuracy: %s\nStage times (s): %s',
             opts.seed, results['n_train_images'], train_table,
             100 * results['pseudo_mask']['background_iou'], results['segmentation']['n_images'],
             val_table, accuracy_summary(results['clip']['clip']),
             ', '.join('%s %.0f' % kv for kv in clock.times.items()))
    log.info('results: %s\nreport page: %s', os.path.abspath(results_path), os.path.abspath(page))
    log.info('Demo finished in %.0f s', sum(clock.times.values()))
    return results


if __name__ == '__main__':
    main()
