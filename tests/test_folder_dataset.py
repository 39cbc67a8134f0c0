"""The folder dataset (--dataset folder --data_root DIR): its layout, every bad input,
the same CAMs and scores as --dataset voc12 on the fixture set converted by
tools/voc_to_folder.py, and the whole flow on tiny folders (CSV labels with
masks, JSON labels without)."""
import json
import logging
import os
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import REF, VOC_MINI
from data.folder import FolderDataset, FolderFormatError, read_classes, write_labels
from misc.logutil import get_logger
from pipeline.stage import build_source
import run_sample
from tools.voc_to_folder import convert
from voc12.devkit import VOC12
from vqa.text_features import TextFeatureCache, cache_texts, fg_prompted_answers


# ----------------------------------------------------------------------------- helpers

def write_folder(root, classes, labels, labels_file='labels.csv', image_files=None,
                 masks=None, splits=None):
    """A folder dataset: ``labels`` {id: [names]}; one 8 x 8 image per id (or the
    file names of ``image_files``); masks {id: array}; splits {name: [ids]}."""
    (root / 'images').mkdir(parents=True)
    for name in image_files or [i + '.png' for i in labels]:
        Image.new('RGB', (8, 8), (40, 80, 120)).save(root / 'images' / name)
    (root / 'classes.txt').write_text('\n'.join(classes) + '\n')
    write_labels(str(root / labels_file), labels)
    for image_id, mask in (masks or {}).items():
        (root / 'masks').mkdir(exist_ok=True)
        Image.fromarray(np.asarray(mask, np.uint8)).save(root / 'masks' / (image_id + '.png'))
    for name, ids in (splits or {}).items():
        (root / 'splits').mkdir(exist_ok=True)
        (root / 'splits' / (name + '.txt')).write_text('\n'.join(ids) + '\n')
    return root


def problems_of(root):
    with pytest.raises(FolderFormatError) as info:
        FolderDataset(str(root))
    return info.value.problems


class Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def log_records():
    handler = Records()
    get_logger().addHandler(handler)
    yield handler.messages
    get_logger().removeHandler(handler)


# ----------------------------------------------------------------------------- layout

def test_csv_and_json_labels_give_the_same_dataset(tmp_path):
    labels = {'a': ['dog'], 'b': ['cat', 'dog'], 'c': ['bird']}
    csv_root = write_folder(tmp_path / 'csv', ['cat', 'dog: puppy, hound', 'bird'], labels)
    json_root = write_folder(tmp_path / 'json', ['cat', 'dog: puppy, hound', 'bird'], labels,
                             'labels.json')
    for root in (csv_root, json_root):
        source = FolderDataset(str(root))
        assert source.class_names == ('cat', 'dog', 'bird') and source.n_classes == 3
        assert [source.image_label_ids(i) for i in 'abc'] == [(1,), (0, 1), (2,)]
        assert source.ids('train') == ['a', 'b', 'c']            # no splits: every labelled image
        assert source.class_aliases == {'dog': ('dog', 'puppy', 'hound')}
        assert fg_prompted_answers('dog', ['big hound', 'brown'], source.class_aliases) == \
            ['big hound', 'brown dog']
        assert source.label_names == ('background', 'cat', 'dog', 'bird')
        np.testing.assert_array_equal(source.image_labels('b'), [1, 1, 0])


def test_class_ids_follow_classes_txt_separators_and_file_names(tmp_path):
    root = write_folder(tmp_path, ['bird', 'dog', 'cat'], {}, image_files=['a.jpg', 'b.png'],
                        splits={'val': ['b']})
    (root / 'labels.csv').write_text('image,labels\na.jpg,cat|dog\n\nb, bird ; cat\n')
    source = FolderDataset(str(root))
    assert source.image_label_ids('a') == (1, 2) and source.image_label_ids('b') == (0, 2)
    assert source.image_path('a').endswith(os.path.join('images', 'a.jpg'))
    assert source.ids('val') == ['b'] and source.ids('train') == ['a', 'b']
    with pytest.raises(FileNotFoundError, match='splits of .*: train, val'):
        source.ids('test')


def test_registered_for_run_sample(tmp_path):
    root = write_folder(tmp_path, ['cat'], {'a': ['cat']})
    args = run_sample.build_parser().parse_args(['--dataset', 'folder', '--data_root', str(root)])
    run_sample.resolve_args(args)
    assert args.train_list == 'train' and args.infer_list == 'train'
    assert args.vqa_fg_file == 'folder_vqa_fg_blip.json'
    assert isinstance(build_source(args), FolderDataset)
    with pytest.raises(ValueError, match='--data_root'):
        run_sample.main(['--dataset', 'folder', '--work_space', str(tmp_path / 'ws'),
                         '--make_cam_pass', 'True'])


# ----------------------------------------------------------------------------- bad input

def test_unknown_class_names_the_line(tmp_path):
    root = write_folder(tmp_path, ['cat', 'dog'], {'a': ['cat'], 'b': ['dgo', 'cat']})
    assert problems_of(root) == [
        "%s line 3: unknown class(es) 'dgo' (classes.txt has: cat, dog)" % (root / 'labels.csv')]


def test_image_missing_from_images(tmp_path):
    root = write_folder(tmp_path, ['cat'], {'a': ['cat'], 'b': ['cat']}, image_files=['a.png'])
    [problem] = problems_of(root)
    assert problem.startswith("%s line 3: image 'b' is not in images/" % (root / 'labels.csv'))


def test_duplicate_ids(tmp_path):
    root = write_folder(tmp_path / 'csv', ['cat'], {'a': ['cat'], 'b': ['cat']})
    with open(root / 'labels.csv', 'a') as f:
        f.write('a.png,cat\n')
    labels = root / 'labels.csv'
    assert problems_of(root) == ["%s line 4: image 'a' repeats %s line 2" % (labels, labels)]
    root = write_folder(tmp_path / 'json', ['cat'], {'a': ['cat']}, 'labels.json')
    (root / 'labels.json').write_text('{"a": ["cat"], "a": ["cat"]}')
    [problem] = problems_of(root)
    assert problem == "%s entry 2: image 'a' repeats %s entry 1" % ((root / 'labels.json',) * 2)
    root = write_folder(tmp_path / 'files', ['cat'], {'a': ['cat']},
                        image_files=['a.jpg', 'a.png'])
    assert problems_of(root) == ["images/a.jpg and images/a.png have the same id 'a': rename one"]
    root = write_folder(tmp_path / 'split', ['cat'], {'a': ['cat']}, splits={'val': ['a', 'a']})
    with pytest.raises(FolderFormatError, match=r"val.txt line 2: image 'a' repeats line 1"):
        FolderDataset(str(root)).ids('val')


def test_empty_label_set(tmp_path):
    root = write_folder(tmp_path / 'csv', ['cat'], {'a': ['cat'], 'b': []})
    assert problems_of(root) == ["%s line 3: image 'b' has no labels (give it at least one "
                                 "class, or leave it out of the labels file)"
                                 % (root / 'labels.csv')]
    root = write_folder(tmp_path / 'json', ['cat'], {'a': []}, 'labels.json')
    assert problems_of(root)[0].startswith("%s entry 1: image 'a' has no labels"
                                           % (root / 'labels.json'))


def test_every_problem_at_once_and_nothing_is_written(tmp_path):
    root = write_folder(tmp_path / 'data', ['cat', 'dog'],
                        {'a': ['cat'], 'b': [], 'c': ['cow'], 'd': ['dog']},
                        image_files=['a.png', 'b.png', 'c.png'])
    work_space = tmp_path / 'ws'
    with pytest.raises(FolderFormatError) as info:
        run_sample.main(['--dataset', 'folder', '--data_root', str(root), '--work_space',
                         str(work_space), '--device', 'cpu', '--make_cam_pass', 'True'])
    lines = [p.split(': ', 1)[0] for p in info.value.problems]
    labels = str(root / 'labels.csv')
    assert lines == ['%s line %d' % (labels, n) for n in (3, 4, 5)]
    assert '3 problem(s); nothing was written' in str(info.value)
    assert sorted(os.listdir(work_space)) == ['run.log', 'run_args.json']


def test_bad_classes_and_labels_files(tmp_path):
    root = write_folder(tmp_path / 'classes', ['cat', 'background', '# a comment', '', 'cat'],
                        {'a': ['cat']})
    classes = root / 'classes.txt'
    assert problems_of(root) == [
        '%s line 2: "background" is implicit (mask id 0); remove the line' % classes,
        "%s line 5: class 'cat' repeats line 1" % classes]
    root = write_folder(tmp_path / 'header', ['cat'], {'a': ['cat']})
    (root / 'labels.csv').write_text('name,classes\na,cat\n')
    assert problems_of(root)[0].endswith('line 1: the header must be "image,labels", not '
                                         "'name,classes'")
    write_labels(str(root / 'labels.json'), {'a': ['cat']})
    with pytest.raises(FileNotFoundError, match='both labels.csv and labels.json'):
        FolderDataset(str(root))
    root = write_folder(tmp_path / 'split', ['cat'], {'a': ['cat']}, image_files=['a.png', 'u.png'],
                        splits={'val': ['u']})
    with pytest.raises(FolderFormatError, match="val.txt line 1: image 'u' has no labels"):
        FolderDataset(str(root)).ids('val')


def test_class_no_image_has_is_a_warning(tmp_path, log_records):
    root = write_folder(tmp_path, ['cat', 'dog', 'cow'], {'a': ['dog']})
    assert FolderDataset(str(root)).n_classes == 3
    assert [m for m in log_records if 'no image of labels.csv has the class(es) cat, cow' in m]


def test_mask_values_outside_the_classes(tmp_path):
    good = np.array([[0, 1], [2, 255]])
    root = write_folder(tmp_path, ['cat', 'dog'], {'a': ['cat'], 'b': ['dog']},
                        masks={'a': good, 'b': np.array([[0, 3], [7, 255]])})
    source = FolderDataset(str(root))
    np.testing.assert_array_equal(source.read_mask('a'), good)
    with pytest.raises(ValueError, match=r'mask .*masks/b.png holds the values \[3, 7\], '
                                         r'outside 0..2'):
        source.read_mask('b')


# ----------------------------------------------------------------------------- voc12 equivalence

@pytest.fixture(scope='module')
def voc_as_folder(tmp_path_factory):
    """The fixture VOC set converted with tools/voc_to_folder.py."""
    out = tmp_path_factory.mktemp('voc_folder')
    convert(str(VOC_MINI), str(out))
    return out


def test_converted_set_has_vocs_names_labels_splits_and_masks(voc_as_folder):
    voc, folder = VOC12(str(VOC_MINI)), FolderDataset(str(voc_as_folder))
    assert folder.class_names == voc.class_names
    assert read_classes(str(voc_as_folder / 'classes.txt'))[1] == {
        n: a for n, a in folder.class_aliases.items()}
    assert all(set(folder.class_aliases[n]) == set(voc.class_aliases[n])
               for n in folder.class_aliases) and folder.class_aliases
    splits = sorted(n[:-4] for n in os.listdir(VOC_MINI / 'ImageSets' / 'Segmentation'))
    for split in splits:
        assert folder.ids(split) == voc.ids(split)
    for image_id in voc.ids('trainval'):
        assert folder.image_label_ids(image_id) == voc.image_label_ids(image_id)
        np.testing.assert_array_equal(folder.read_mask(image_id), voc.read_mask(image_id))
        np.testing.assert_array_equal(folder.read_image(image_id), voc.read_image(image_id))
    assert folder.palette == voc.palette


def sample_both(tmp_path, voc_as_folder, *extra):
    """The same run_sample command on --dataset voc12 and on the converted folder."""
    spaces = {}
    for name, data in (('voc12', ['--voc12_root', VOC_MINI]),
                       ('folder', ['--data_root', voc_as_folder])):
        ws = tmp_path / name
        if (tmp_path / 'start').is_dir():
            shutil.copytree(tmp_path / 'start', ws)
        run_sample.main(['--dataset', name, '--work_space', str(ws), '--device', 'cpu',
                         '--num_workers', '0'] + [str(d) for d in data + list(extra)])
        spaces[name] = ws
    return spaces['voc12'], spaces['folder']


def same_json(voc_ws, folder_ws, name):
    voc, folder = (json.loads((ws / name).read_text()) for ws in (voc_ws, folder_ws))
    for result in (voc, folder):
        for key in ('dataset', 'cam_out_dir', 'sem_seg_out_dir', 'provenance'):
            result.pop(key, None)
    assert voc == folder
    return voc


def test_same_cams_and_scores_as_voc12(tmp_path, voc_as_folder, clims_reference_weights):
    voc_ws, folder_ws = sample_both(
        tmp_path, voc_as_folder, '--clims_weights_name', clims_reference_weights,
        '--infer_list', 'trainval', '--chainer_eval_set', 'trainval', '--train_list', 'trainval',
        '--cam_scales', '1.0,0.5', '--make_clims_pass', 'True', '--eval_cam_pass', 'True', '--eval_cam_best', 'True',
        '--cam_to_ir_label_pass', 'True')
    names = sorted(os.listdir(voc_ws / 'cams'))
    assert names == sorted(i + '.npz' for i in VOC12(str(VOC_MINI)).ids('trainval'))
    for name in names:
        voc, folder = np.load(voc_ws / 'cams' / name), np.load(folder_ws / 'cams' / name)
        for key in ('keys', 'cam', 'high_res'):
            np.testing.assert_array_equal(folder[key], voc[key])
    for name in os.listdir(voc_ws / 'ir_label'):
        assert (voc_ws / 'ir_label' / name).read_bytes() == \
            (folder_ws / 'ir_label' / name).read_bytes()
    result = same_json(voc_ws, folder_ws, 'eval_cam.json')
    assert result['n_images'] == len(names) and len(result['sweep']) == 55


def test_same_pseudo_mask_scores_as_voc12(tmp_path, voc_as_folder):
    shutil.copytree(REF / 'sem_seg', tmp_path / 'start' / 'sem_seg')
    voc_ws, folder_ws = sample_both(tmp_path, voc_as_folder, '--chainer_eval_set', 'trainval',
                                    '--eval_sem_seg_pass', 'True')
    result = same_json(voc_ws, folder_ws, 'eval_sem_seg.json')
    assert result['n_images'] == len(VOC12(str(VOC_MINI)).ids('trainval'))


# ----------------------------------------------------------------------------- the whole flow

def own_classes_folder(converted, out, labels_file, with_masks):
    """A folder dataset of our own classes from a converted demo set: only the classes
    present, renamed and listed in reverse order (ids follow classes.txt), the masks
    renumbered; returns {old class id: new class id} and the new names."""
    source = FolderDataset(str(converted))
    present = sorted(set(c for i in source.ids('train') + source.ids('val')
                         for c in source.image_label_ids(i)))
    names = ['shape %s' % source.class_names[c].replace(' ', '') for c in present][::-1]
    new_id = {old: len(present) - 1 - k for k, old in enumerate(present)}
    shutil.copytree(converted / 'images', out / 'images')
    shutil.copytree(converted / 'splits', out / 'splits')
    (out / 'classes.txt').write_text('%s: %s\n' % (names[0], names[0].split()[1]) +
                                     ''.join(n + '\n' for n in names[1:]))
    write_labels(str(out / labels_file), {
        i: [names[new_id[c]] for c in source.image_label_ids(i)] for i in source.ids('trainval')})
    if with_masks:
        lookup = np.arange(256, dtype=np.uint8)
        lookup[[c + 1 for c in present]] = [new_id[c] + 1 for c in present]
        (out / 'masks').mkdir()
        for image_id in source.ids('trainval'):
            Image.fromarray(lookup[source.read_mask(image_id)]).save(
                out / 'masks' / (image_id + '.png'))
    return new_id, names


@pytest.fixture(scope='module')
def flow_inputs(tmp_path_factory):
    """Two folders of our own classes made from one demo set (labels.csv with masks,
    labels.json without), new images to predict, a tiny BLIP and a tiny CLIP."""
    from tools.make_demo_voc import generate_demo_voc
    from tools.make_tiny_blip import write_tiny_blip
    from tools.make_tiny_clip import write_tiny_clip
    base = tmp_path_factory.mktemp('flow')
    voc = generate_demo_voc(str(base / 'voc'), n_images=10, seed=3, min_side=64, max_side=80,
                            max_classes=3)
    convert(voc['root'], str(base / 'converted'))
    csv_mapping = own_classes_folder(base / 'converted', base / 'csv', 'labels.csv', True)
    json_mapping = own_classes_folder(base / 'converted', base / 'json', 'labels.json', False)
    assert csv_mapping == json_mapping
    new = generate_demo_voc(str(base / 'new'), n_images=3, seed=4, min_side=64, max_side=80)
    return {'csv': base / 'csv', 'json': base / 'json', 'names': csv_mapping[1],
            'new_images': os.path.join(new['root'], 'JPEGImages'),
            'blip': write_tiny_blip(str(base / 'blip')),
            'clip': write_tiny_clip(str(base / 'tiny_clip.safetensors'))}


def flow_args(root, work_space, inputs, stages, *extra):
    argv = ['--dataset', 'folder', '--data_root', str(root), '--work_space', str(work_space),
            '--device', 'cpu', '--num_workers', '0', '--val_list', '',
            '--vqa_model', inputs['blip'], '--vqa_batch_size', '4', '--vqa_image_size', '48',
            '--cam_batch_size', '4', '--cam_num_epoches', '1', '--cam_crop_size', '64',
            '--cam_resize_long', '48,80', '--cam_scales', '1.0,0.5',
            '--clims_batch_size', '4', '--clims_num_epoches', '1', '--clims_crop_size', '64',
            '--clims_resize_long', '48,80', '--clip', inputs['clip'],
            '--mask_clip_weights', inputs['clip'],
            '--irn_backbone_weights', 'res50_cam.safetensors', '--irn_crop_size', '80',
            '--irn_batch_size', '4', '--irn_num_epoches', '1',
            '--seg_batch_size', '2', '--seg_crop_size', '48', '--seg_num_iters', '2',
            '--seg_grad_clip', '10', '--seg_eval_scales', '1.0', '--seg_eval_flip', 'False',
            '--predict_images', inputs['new_images']] + list(extra)
    return argv + [a for stage in stages for a in ('--%s_pass' % stage, 'True')]


def text_caches(root, work_space, clip):
    from tools.gen_text_feats_cache import main as gen_cache
    gen_cache(['folder', '--data_root', str(root), '--clip', clip] + [
        a for kind in ('fg', 'bg') for a in (
            '--vqa_%s_file' % kind, str(work_space / ('folder_vqa_%s_blip.json' % kind)),
            '--vqa_%s_cache_file' % kind,
            str(work_space / ('folder_vqa_%s_blip_ViT-L-14_cache.safetensors' % kind)))])


@pytest.fixture(scope='module')
def csv_flow(tmp_path_factory, flow_inputs):
    """Every stage on the folder with labels.csv and masks."""
    ws = tmp_path_factory.mktemp('csv_flow')
    run_sample.main(flow_args(flow_inputs['csv'], ws, flow_inputs, ['vqa']))
    text_caches(flow_inputs['csv'], ws, flow_inputs['clip'])
    results = run_sample.run_stages(run_sample.build_parser().parse_args(flow_args(
        flow_inputs['csv'], ws, flow_inputs, [s for s in run_sample.STAGES
                                              if s not in ('vqa', 'make_cam')])))
    return ws, results


def test_every_stage_on_a_folder_with_csv_labels_and_masks(csv_flow, flow_inputs):
    ws, results = csv_flow
    source = FolderDataset(str(flow_inputs['csv']))
    assert list(source.class_names) == flow_inputs['names']
    fg = json.loads((ws / 'folder_vqa_fg_blip.json').read_text())
    assert sorted(fg) == sorted(source.ids('train'))
    for image_id, per_class in fg.items():
        assert sorted(per_class) == sorted(source.class_names[c]
                                           for c in source.image_label_ids(image_id))
    cache = TextFeatureCache.load(str(ws / 'folder_vqa_fg_blip_ViT-L-14_cache.safetensors'))
    assert cache.texts == cache_texts(fg, 'fg', aliases=source.class_aliases)
    assert any(t.endswith(' ' + n) for t in cache.texts for n in source.class_names)
    for stage, split in (('eval_cam', 'train'), ('eval_sem_seg', 'train'), ('eval_seg', 'val')):
        result = json.loads((ws / (stage + '.json')).read_text())
        assert result['n_images'] == len(source.ids(split)) and result['dataset'] == 'folder'
        scores = result['plain'] if stage == 'eval_seg' else result
        assert list(scores['iou_by_class']) == list(source.label_names)
        assert 0 <= scores['miou'] <= 1
    for image_id in source.ids('train'):
        pseudo = np.asarray(Image.open(ws / 'sem_seg' / (image_id + '.png')))
        assert set(np.unique(pseudo)) <= {0} | {c + 1 for c in source.image_label_ids(image_id)}
    from net.checkpoint import read_weights_metadata
    assert json.loads(read_weights_metadata(str(ws / 'deeplab_seg.safetensors'))[
        'class_names']) == flow_inputs['names']
    predicted = results['predict']
    assert predicted['class_names'] == flow_inputs['names']
    assert sorted(predicted['images']) == sorted(
        os.path.splitext(n)[0] for n in os.listdir(flow_inputs['new_images']))


def test_json_labels_without_masks_run_and_skip_scoring(tmp_path, csv_flow, flow_inputs):
    """The trained weights of the CSV flow on the same folder with labels.json and no
    masks: the same CAMs and pseudo masks; every scoring stage says it skips scoring."""
    csv_ws, _ = csv_flow
    for name in ('res50_qa_clims.safetensors', 'res50_irn.safetensors',
                 'deeplab_seg.safetensors'):
        shutil.copy(csv_ws / name, tmp_path / name)
    stages = ['make_clims', 'eval_cam', 'cam_to_ir_label', 'make_sem_seg', 'eval_sem_seg',
              'eval_seg', 'predict']
    results = run_sample.run_stages(run_sample.build_parser().parse_args(
        flow_args(flow_inputs['json'], tmp_path, flow_inputs, stages)))
    log = (tmp_path / 'run.log').read_text()
    for stage in ('eval_cam', 'eval_sem_seg', 'eval_seg'):
        assert results[stage] is None and not (tmp_path / (stage + '.json')).exists()
        assert re.search(r'%s: skipping scoring: none of the \d+ images of \w+ has a mask '
                         r'\(\S+/masks/\S+\.png does not exist' % stage, log)
    for folder, suffix in (('cams', '.npz'), ('sem_seg', '.png')):
        names = sorted(os.listdir(csv_ws / folder))
        assert names == sorted(i + suffix for i in FolderDataset(str(flow_inputs['json'])).ids(
            'train'))
        assert sorted(os.listdir(tmp_path / folder)) == names
        for name in names:
            assert (tmp_path / folder / name).read_bytes() == (csv_ws / folder / name).read_bytes()
    assert results['predict']['images'].keys() == csv_flow[1]['predict']['images'].keys()
