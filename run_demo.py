"""The demo: synthetic VOC-layout data -> baseline CAM training -> QA-CLIMS
training (with a tiny random CLIP and the generator's VQA answers) -> CAMs ->
evaluation -> IRNet (confident regions, training, random walk) -> pseudo-mask
evaluation, on CPU in a few minutes (``./demo.sh`` sets up and runs this).

    python run_demo.py [--out demo_out] [--epochs 30] [--device auto]

Prints the per-class IoU tables, where the outputs are, and writes panels
(image | CAM overlay | CAM labels | GT) to ``<out>/overlays`` and
(image | pseudo mask | GT) to ``<out>/overlays_sem_seg``.
"""
import argparse
import os
import time

import torch

from misc.logutil import get_logger
from pipeline.paths import in_work_space
from pipeline.report import comparison_table
from pipeline.stage import build_source
from run_sample import build_parser, run_stages
from tools.gen_text_feats_cache import main as gen_text_feats_cache
from tools.make_demo_voc import generate_demo_voc
from tools.make_tiny_clip import write_tiny_clip
from tools.visualize import write_cam_panels, write_label_panels


BASELINE_STAGES = ('train_cam', 'make_cam', 'eval_cam')
QA_CLIMS_STAGES = ('train_qa_clims', 'make_clims', 'eval_cam', 'cam_to_ir_label', 'train_irn',
                   'make_sem_seg', 'eval_sem_seg', 'train_seg', 'eval_seg')


def demo_arguments(out, voc_root, clip_file, opts, stages, cam_out_dir):
    """run_sample arguments of the demo: small crops and batches for a CPU."""
    ws = os.path.join(out, 'work_space')
    resize_long = '%d,%d' % (opts.crop * 3 // 4, opts.crop * 5 // 4)
    argv = [
        '--voc12_root', voc_root, '--work_space', ws,
        '--device', opts.device, '--num_workers', str(opts.num_workers), '--seed', '0',
        '--train_list', 'train', '--val_list', '', '--infer_list', 'train',
        '--chainer_eval_set', 'train', '--cam_out_dir', cam_out_dir,
        '--cam_batch_size', '8', '--cam_num_epoches', str(opts.epochs),
        '--cam_learning_rate', str(opts.lr), '--cam_crop_size', str(opts.crop),
        '--cam_detach_early_stages', 'True',     # random backbone: all stages at lr 0.1 diverge
        '--cam_resize_long', resize_long,
        '--cam_scales', '1.0,0.5,1.5', '--eval_cam_best', 'True',
        '--clims_batch_size', '8', '--clims_num_epoches', str(opts.clims_epochs),
        '--clims_crop_size', str(opts.crop), '--clims_resize_long', resize_long,
        '--clip', clip_file, '--mask_clip_weights', clip_file,
        '--vqa_fg_file', os.path.join(voc_root, 'vqa_fg.json'),
        '--vqa_bg_file', os.path.join(voc_root, 'vqa_bg.json'),
        '--vqa_fg_cache_file', os.path.join(ws, 'vqa_fg_cache.safetensors'),
        '--vqa_bg_cache_file', os.path.join(ws, 'vqa_bg_cache.safetensors'),
        '--irn_backbone_weights', 'res50_cam.safetensors', '--irn_crop_size', str(opts.crop),
        '--irn_batch_size', '8', '--irn_num_epoches', str(opts.irn_epochs),
        '--sem_seg_color', 'True',
        '--seg_train_list', 'train', '--seg_label_dir', 'sem_seg', '--seg_batch_size', '4',
        '--seg_crop_size', str(opts.seg_crop), '--seg_num_iters', str(opts.seg_iters),
        '--seg_grad_clip', '10', '--seg_eval_set', 'val', '--seg_eval_scales', '1.0']
    for stage in stages:
        argv += ['--%s_pass' % stage, 'True']
    return build_parser().parse_args(argv)


def text_feature_caches(args):
    """Encode the synthetic VQA answers with the tiny CLIP (docs/method.md#text-features)."""
    gen_text_feats_cache(['voc', '--vqa_fg_file', args.vqa_fg_file, '--vqa_bg_file',
                          args.vqa_bg_file, '--vqa_fg_cache_file', args.vqa_fg_cache_file,
                          '--vqa_bg_cache_file', args.vqa_bg_cache_file, '--clip', args.clip])


def report(source, args, baseline, results, voc_root, panels):
    """Print the CAM / pseudo-mask IoU table and where the outputs are."""
    cam, sem = results['eval_cam'], results['eval_sem_seg']
    log = get_logger()
    seg = results['eval_seg']
    log.info('\nDemo results on the synthetic train split (%d images):\n%s\n'
             'CAM threshold %.2f; best threshold: baseline %.2f (%.2f%%), QA-CLIMS %.2f (%.2f%%)\n'
             'Segmentation network (%s on the pseudo masks) on the val split (%d images):\n%s',
             cam['n_images'],
             comparison_table(source.label_names, [
                 ('baseline CAM', baseline['iou'], baseline['miou']),
                 ('QA-CLIMS CAM', cam['iou'], cam['miou']),
                 ('pseudo mask', sem['iou'], sem['miou'])]),
             cam['threshold'], baseline['best']['threshold'], 100 * baseline['best']['miou'],
             cam['best']['threshold'], 100 * cam['best']['miou'], args.seg_arch,
             seg['n_images'], comparison_table(source.label_names, [
                 ('DeepLab', seg['plain']['iou'], seg['plain']['miou'])]))
    ws = args.work_space
    log.info('Outputs:\n  dataset        %s\n  CAM weights    %s, %s\n  CAMs           %s\n'
             '  IRNet weights  %s\n  pseudo masks   %s (+ _color)\n  DeepLab        %s, '
             'predictions %s (+ _color)\n  evaluations    %s, %s, %s\n'
             '  log            %s\n  panels         %s',
             voc_root, os.path.join(ws, args.cam_weights_name),
             os.path.join(ws, args.clims_weights_name), in_work_space(ws, args.cam_out_dir),
             os.path.join(ws, args.irn_weights_name), os.path.join(ws, args.sem_seg_out_dir),
             os.path.join(ws, args.seg_weights_name), os.path.join(ws, args.seg_out_dir),
             os.path.join(ws, 'eval_cam.json'), os.path.join(ws, 'eval_sem_seg.json'),
             os.path.join(ws, 'eval_seg.json'),
             os.path.join(ws, args.log_name + '.log'), '\n                 '.join(panels))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', default='demo_out')
    p.add_argument('--n_images', type=int, default=40)
    p.add_argument('--max_classes', type=int, default=6)
    p.add_argument('--epochs', type=int, default=30)
    p.add_argument('--crop', type=int, default=128)
    p.add_argument('--clims_epochs', type=int, default=5)
    p.add_argument('--irn_epochs', type=int, default=20)
    p.add_argument('--seg_iters', type=int, default=25)
    p.add_argument('--seg_crop', type=int, default=96)
    p.add_argument('--lr', type=float, default=0.1)
    p.add_argument('--device', default='auto')
    p.add_argument('--num_workers', type=int, default=0)
    opts = p.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    start = time.time()
    data = generate_demo_voc(os.path.join(opts.out, 'VOC2012'), n_images=opts.n_images, seed=0,
                             max_classes=opts.max_classes)
    clip_file = write_tiny_clip(os.path.join(opts.out, 'tiny_clip.safetensors'))
    baseline_args = demo_arguments(opts.out, data['root'], clip_file, opts, BASELINE_STAGES,
                                   'cams_baseline')
    baseline = run_stages(baseline_args)['eval_cam']
    args = demo_arguments(opts.out, data['root'], clip_file, opts, QA_CLIMS_STAGES, 'cams')
    text_feature_caches(args)
    results = run_stages(args)
    source = build_source(args)
    panels = write_cam_panels(source, source.ids('train')[:4],
                              in_work_space(args.work_space, args.cam_out_dir),
                              os.path.join(opts.out, 'overlays'), args.cam_eval_thres)
    seg_panels = write_label_panels(source, source.ids('train')[:4],
                                    os.path.join(args.work_space, args.sem_seg_out_dir),
                                    os.path.join(opts.out, 'overlays_sem_seg'))
    report(source, args, baseline, results, data['root'], panels + seg_panels)
    get_logger().info('Demo finished in %.0f s', time.time() - start)


if __name__ == '__main__':
    main()
