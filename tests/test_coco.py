"""MS COCO 2014 through the same steps (--dataset coco14) on a synthetic COCO-format set."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw

from coco14.dataset import COCO14
from conftest import REPO
import run_sample
from tools.gen_text_feats_cache import main as gen_cache
from tools.make_demo_coco import COCO_CATEGORY_IDS, generate_demo_coco
from tools.make_tiny_blip import write_tiny_blip
from tools.make_tiny_clip import write_tiny_clip


@pytest.fixture(scope='module')
def coco(tmp_path_factory):
    root = tmp_path_factory.mktemp('coco')
    return str(root), generate_demo_coco(str(root), n_images=6, seed=2)


def expected_mask(info):
    """Paint the drawn objects ourselves: ellipses exactly, polygons with PIL, crowd 255."""
    h, w = info['size']
    out = np.zeros((h, w), np.uint8)
    objects = sorted(zip(info['objects'], info['annotations']), key=lambda p: -p[1]['area'])
    for obj, ann in objects:
        if obj['kind'] == 'ellipse':
            yy, xx = np.mgrid[0:h, 0:w]
            mask = ((yy + 0.5 - obj['cy']) / obj['ry']) ** 2 + \
                ((xx + 0.5 - obj['cx']) / obj['rx']) ** 2 <= 1.0
        else:
            canvas = Image.new('L', (w, h), 0)
            ImageDraw.Draw(canvas).polygon(ann['segmentation'][0], fill=1)
            mask = np.asarray(canvas).astype(bool)
        out[mask] = obj['class'] + 1
    if info['crowd']:
        corner = np.zeros((h, w), bool)
        corner[:h // 6, :w // 6] = True
        out[corner & (out == 0)] = 255
    return out


def test_labels_and_masks_from_the_instances_json(coco):
    root, drawn = coco
    source = COCO14(root)
    assert len(source.class_names) == 80 and source.class_names[0] == 'person'
    assert source.ids('train') == sorted(k for k, v in drawn.items() if v['split'] == 'train2014')
    exact = 0
    for image_id, info in drawn.items():
        assert source.image_label_ids(image_id) == tuple(sorted(set(o['class'] for o in info['objects'])))
        ours, expected = source.read_mask(image_id), expected_mask(info)
        assert ours.shape == expected.shape
        if all(o['kind'] == 'ellipse' for o in info['objects']):
            np.testing.assert_array_equal(ours, expected)      # RLE: exact
            exact += 1
        else:                                                  # polygons: rasterisers differ
            assert (ours == expected).mean() > 0.97
        if info['crowd']:
            assert (ours == 255).any()
    assert exact >= 1
    assert not os.path.exists(os.path.join(root, 'SegmentationClass'))   # nothing written there


def test_category_order_and_bad_roots(tmp_path, coco):
    assert len(COCO_CATEGORY_IDS) == 80 and COCO_CATEGORY_IDS[-1] == 90
    with pytest.raises(FileNotFoundError, match='no annotations/ folder'):
        COCO14(str(tmp_path))
    with pytest.raises(ValueError, match='not a COCO 2014 image id'):
        COCO14(coco[0]).image_path('2007_000032')


def test_whole_pipeline_on_coco(tmp_path, coco):
    root, drawn = coco
    ws = tmp_path / 'ws'
    common = ['--dataset', 'coco14', '--mscoco_root', root, '--work_space', str(ws),
              '--device', 'cpu', '--num_workers', '0']
    blip = write_tiny_blip(str(tmp_path / 'blip'))
    run_sample.main(common + ['--vqa_model', blip, '--vqa_list', 'train', '--vqa_image_size', '32',
                              '--vqa_fg_file', 'coco_vqa_fg.json', '--vqa_bg_file',
                              'coco_vqa_bg.json', '--vqa_pass', 'True'])
    clip = write_tiny_clip(str(tmp_path / 'clip.safetensors'))
    gen_cache(['coco', '--vqa_fg_file', str(ws / 'coco_vqa_fg.json'), '--vqa_bg_file',
               str(ws / 'coco_vqa_bg.json'), '--vqa_fg_cache_file', str(ws / 'fg.safetensors'),
               '--vqa_bg_cache_file', str(ws / 'bg.safetensors'), '--clip', clip])
    run_sample.main(common + [
        '--train_list', 'train', '--val_list', '', '--infer_list', 'train',
        '--chainer_eval_set', 'train', '--cam_batch_size', '2', '--cam_num_epoches', '1',
        '--cam_crop_size', '64', '--cam_resize_long', '48,96', '--cam_scales', '1.0,0.5',
        '--clims_batch_size', '2', '--clims_num_epoches', '1', '--clims_crop_size', '64',
        '--clims_resize_long', '48,96', '--cam_weights_name',
        'res50_cam.safetensors', '--clip', clip, '--mask_clip_weights', clip,
        '--vqa_fg_file', 'coco_vqa_fg.json', '--vqa_bg_file', 'coco_vqa_bg.json',
        '--vqa_fg_cache_file', 'fg.safetensors', '--vqa_bg_cache_file', 'bg.safetensors',
        '--irn_crop_size', '96', '--irn_batch_size', '2', '--irn_num_epoches', '1',
        '--seg_train_list', 'train', '--seg_batch_size', '2', '--seg_crop_size', '64',
        '--seg_num_iters', '2', '--seg_grad_clip', '10', '--seg_eval_set', 'val',
        '--seg_eval_scales', '1.0',
        '--train_cam_pass', 'True', '--train_qa_clims_pass', 'True', '--make_clims_pass', 'True',
        '--eval_cam_pass', 'True', '--cam_to_ir_label_pass', 'True', '--train_irn_pass', 'True',
        '--make_sem_seg_pass', 'True', '--eval_sem_seg_pass', 'True', '--train_seg_pass', 'True',
        '--eval_seg_pass', 'True'])
    cam = json.loads((ws / 'eval_cam.json').read_text())
    assert cam['dataset'] == 'coco14' and len(cam['iou']) == 81
    assert cam['coco_protocol'] == 'reference' and cam['n_images'] == len(COCO14(root).ids('train'))
    assert cam['iou_by_class']['toothbrush'] is None
    sem = json.loads((ws / 'eval_sem_seg.json').read_text())
    seg = json.loads((ws / 'eval_seg.json').read_text())
    assert 0 <= sem['miou'] <= 1 and 0 <= seg['miou'] <= 1 and len(seg['plain']['iou']) == 81
    fg = json.loads((ws / 'coco_vqa_fg.json').read_text())
    assert set(fg[next(iter(fg))]) <= set(COCO14.class_names)


def test_run_coco14_seg_script_on_ground_truth(tmp_path, coco):
    env = dict(os.environ, MSCOCO_ROOT=coco[0], WORK_SPACE=str(tmp_path), PYTHON=sys.executable,
               NUM_WORKERS='0', SEG_LABEL_DIR='gt', SEG_BATCH_SIZE='2', SEG_CROP_SIZE='64',
               SEG_NUM_ITERS='2', SEG_EVAL_SCALES='1.0', CRF='False', OMP_NUM_THREADS='2')
    subprocess.run(['bash', str(REPO / 'run_coco14_seg.sh')], env=env, check=True,
                   capture_output=True)
    result = json.loads((tmp_path / 'eval_seg.json').read_text())
    assert result['dataset'] == 'coco14' and result['split'] == 'val'
