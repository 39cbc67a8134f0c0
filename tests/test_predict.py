"""Masks for new images (tools/predict.py, run_sample stage predict): CPU, batched,
resumed after a kill, no dataset needed (the weights record the class names)."""
import json
import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO, VOC_MINI, has_file_ending, kill_when
from misc.palette import color_map
from net.checkpoint import save_weights
from net.deeplab import DeepLabV2
import run_sample
from step.predict import find_images, load_predictor, size_batches
from tools.predict import main as predict_main
from tools.voc_to_folder import convert
from voc12.devkit import VOC12

SIDE = 40               # the new images: crops of the fixture images, small for speed


@pytest.fixture(scope='module')
def class_names(tmp_path_factory):
    """The class names of the fixture set converted to a folder dataset (its classes.txt)."""
    from data.folder import read_classes
    folder = tmp_path_factory.mktemp('folder')
    convert(str(VOC_MINI), str(folder))
    return read_classes(str(folder / 'classes.txt'))[0]


@pytest.fixture(scope='module')
def weights(tmp_path_factory, class_names):
    """Random DeepLabV2 weights as train_seg writes them (arch, MSC, classes recorded)."""
    torch.manual_seed(5)
    model = DeepLabV2(len(class_names) + 1)
    with torch.no_grad():
        for conv in model.aspp.branches:
            conv.weight.normal_(std=0.05)
    path = tmp_path_factory.mktemp('weights') / 'seg.safetensors'
    save_weights(model, str(path), {'arch': 'deeplabv2', 'msc': 'False',
                                    'n_classes': str(len(class_names) + 1),
                                    'class_names': json.dumps(list(class_names))})
    return path


@pytest.fixture(scope='module')
def new_images(tmp_path_factory):
    """The fixture images cropped to SIDE x SIDE (same size: one batch) plus one whole
    image (another size), as PNG and JPEG files of a folder."""
    folder = tmp_path_factory.mktemp('new')
    source = VOC12(str(VOC_MINI))
    ids = source.ids('trainval')
    for image_id in ids[:-1]:
        Image.fromarray(source.read_image(image_id)[:SIDE, :SIDE]).save(folder / (image_id + '.png'))
    Image.fromarray(source.read_image(ids[-1])).save(folder / (ids[-1] + '.jpg'), quality=95)
    return folder


def predict(images, weights, out, *extra):
    return predict_main(['--weights', str(weights), '--images', str(images), '--out', str(out),
                         '--device', 'cpu', '--scales', '1.0', '--flip', 'False'] +
                        [str(e) for e in extra])


def read_png(path):
    with Image.open(path) as img:
        return img.mode, np.asarray(img)


@pytest.fixture(scope='module')
def predicted(tmp_path_factory, new_images, weights):
    out = tmp_path_factory.mktemp('predicted')
    return out, predict(new_images, weights, out, '--batch_size', '8')


def test_outputs_of_every_image(predicted, new_images, class_names):
    out, summary = predicted
    ids = sorted(os.path.splitext(n)[0] for n in os.listdir(new_images))
    assert summary == json.loads((out / 'predictions.json').read_text())
    assert summary['class_names'] == list(class_names) and sorted(summary['images']) == ids
    palette = np.array(color_map(), np.float64).reshape(-1, 3)
    names = ['background'] + list(class_names)
    for image_id in ids:
        path = next(new_images.glob(image_id + '.*'))
        with Image.open(path) as img:
            rgb = np.asarray(img.convert('RGB'))
        mode, label = read_png(out / 'masks' / (image_id + '.png'))
        assert mode == 'L' and label.shape == rgb.shape[:2] and label.max() <= len(class_names)
        color_mode, color = read_png(out / 'color' / (image_id + '.png'))
        assert color_mode == 'P' and np.array_equal(color, label)
        _, over = read_png(out / 'overlay' / (image_id + '.png'))
        expected = np.where((label > 0)[..., None], 0.5 * rgb + 0.5 * palette[label], rgb)
        np.testing.assert_array_equal(over, np.clip(np.rint(expected), 0, 255).astype(np.uint8))
        entry = summary['images'][image_id]
        assert entry['file'] == str(path) and entry['size'] == list(label.shape)
        values, counts = np.unique(label, return_counts=True)
        assert entry['classes'] == pytest.approx({names[v]: c / label.size
                                                  for v, c in zip(values, counts)})
    assert len({tuple(e['classes']) for e in summary['images'].values()}) > 1


def test_batches_give_the_masks_of_single_images(tmp_path, predicted, new_images, weights):
    paths = find_images(str(new_images))
    sizes = {}
    for image_id, path in paths.items():
        with Image.open(path) as img:
            sizes.setdefault(img.size, []).append(image_id)
    batches = size_batches(paths, list(paths), 8)
    assert sorted(map(sorted, batches)) == sorted(map(sorted, sizes.values()))
    assert max(len(b) for b in batches) > 1
    assert all(len(b) <= 2 for b in size_batches(paths, list(paths), 2))
    out, _ = predicted
    single = tmp_path / 'single'
    predict(new_images, weights, single, '--batch_size', '1')
    for name in os.listdir(out / 'masks'):
        np.testing.assert_array_equal(read_png(single / 'masks' / name)[1],
                                      read_png(out / 'masks' / name)[1])


def test_a_killed_run_resumes_to_the_same_outputs(tmp_path, predicted, new_images, weights):
    out, summary = predicted
    killed = tmp_path / 'killed'
    cmd = [sys.executable, str(REPO / 'tools' / 'predict.py'), '--weights', str(weights),
           '--images', str(new_images), '--out', str(killed), '--device', 'cpu', '--scales',
           '1.0', '--flip', 'False', '--batch_size', '1']
    kill_when(cmd, lambda: has_file_ending(killed / 'masks', '.png'))
    done_before = len([n for n in os.listdir(killed / 'masks') if n.endswith('.png')])
    assert 0 < done_before < len(summary['images'])
    assert predict(new_images, weights, killed, '--batch_size', '1') == summary
    assert '%d already predicted' % done_before in (killed / 'predict.log').read_text()
    for folder in ('masks', 'color', 'overlay'):
        names = sorted(os.listdir(out / folder))
        assert sorted(n for n in os.listdir(killed / folder) if not n.startswith('.')) == names
        for name in names:
            assert (killed / folder / name).read_bytes() == (out / folder / name).read_bytes()


def test_flip_and_crf_options(tmp_path, new_images, weights):
    predict(new_images, weights, tmp_path, '--flip', 'True', '--crf', 'True')
    settings = json.loads((tmp_path / 'predict_settings.json').read_text())
    assert settings['flip'] and settings['crf'] and settings['scales'] == [1.0]
    with pytest.raises(ValueError, match='holds predictions made with other settings .*crf '
                                         'True, now False'):
        predict(new_images, weights, tmp_path, '--flip', 'True')
    assert len(os.listdir(tmp_path / 'masks')) == len(os.listdir(new_images))


def test_the_run_sample_stage(tmp_path, new_images, weights, predicted):
    out, summary = predicted
    run_sample.main(['--work_space', str(tmp_path), '--device', 'cpu', '--seg_weights_name',
                     str(weights), '--seg_eval_scales', '1.0', '--seg_eval_flip', 'False',
                     '--predict_images', str(new_images / '*.png'), '--predict_pass', 'True'])
    stage = json.loads((tmp_path / 'predictions' / 'predictions.json').read_text())
    pngs = [os.path.splitext(n)[0] for n in os.listdir(new_images) if n.endswith('.png')]
    assert sorted(stage['images']) == sorted(pngs)
    assert all(stage['images'][i]['classes'] == summary['images'][i]['classes'] for i in pngs)
    with pytest.raises(ValueError, match='--predict_images'):
        run_sample.main(['--work_space', str(tmp_path), '--predict_pass', 'True'])


def test_bad_weights_and_image_sets(tmp_path, new_images, weights):
    bare = tmp_path / 'bare.safetensors'
    save_weights(DeepLabV2(3), str(bare), {'arch': 'deeplabv2'})
    with pytest.raises(ValueError, match='bare.safetensors does not record msc, n_classes, '
                                         'class_names'):
        load_predictor(str(bare))
    with pytest.raises(FileNotFoundError, match='no images'):
        find_images(str(tmp_path / 'nothing' / '*.jpg'))
    twin = tmp_path / 'twin'
    twin.mkdir()
    for ext in ('.png', '.jpg'):
        Image.new('RGB', (8, 8)).save(twin / ('a' + ext))
    with pytest.raises(ValueError, match="a.jpg and .*a.png have the same id 'a'"):
        find_images(str(twin))
