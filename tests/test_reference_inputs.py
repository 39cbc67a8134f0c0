"""The authors' outputs as inputs (their CAM .npy files, their COCO mask folder,
their COCO protocol) and which images eval_cam / eval_sem_seg score."""
import json
import math
import os
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from coco14 import protocol
from coco14.dataset import COCO14, image_number
from conftest import REF, VOC_MINI
from misc.io import save_npz, save_png
from net.checkpoint import save_weights
from net.resnet50_cam import CAM
import run_sample
from step.eval_cam import sweep_summary, sweep_thresholds
from tools.export_cams_npy import export_cams
from tools.make_demo_coco import generate_demo_coco
from wsss.cam import CamFiles
from wsss.metrics import cam_to_label, confusion_matrix, iou_from_confusion, mean_iou, \
    original_early_stop_best

EVAL_CAM_REF = json.loads((REF / 'eval_cam.json').read_text())
EVAL_SEM_SEG_REF = json.loads((REF / 'eval_sem_seg.json').read_text())


def split_ids(split):
    return (VOC_MINI / 'ImageSets' / 'Segmentation' / (split + '.txt')).read_text().split()


def all_ids():
    return sorted(n[:-4] for n in os.listdir(REF / 'cams') if n.endswith('.npz'))


def voc(work_space, *extra):
    return run_sample.main(['--voc12_root', str(VOC_MINI), '--work_space', str(work_space),
                            '--num_workers', '0', '--device', 'cpu'] + [str(e) for e in extra])


def read_png(path):
    return np.asarray(Image.open(path))


def without(result, *keys):
    return {k: v for k, v in result.items() if k not in keys}


def nan_list(values):
    return np.array([np.nan if v is None else v for v in values], np.float64)


# ------------------------------------------------------------ the authors' CAM .npy files


@pytest.mark.parametrize('split', sorted(EVAL_CAM_REF))
def test_eval_cam_on_reference_npy_equals_npz(tmp_path, split):
    npz, npy = tmp_path / 'npz', tmp_path / 'npy'
    shutil.copytree(REF / 'cams', npz / 'cams')
    shutil.copytree(REF / 'cams_npy', npy / 'cams')
    args = ('--eval_cam_pass', 'True', '--eval_cam_best', 'True', '--chainer_eval_set', split)
    voc(npz, *args)
    voc(npy, *args, '--import_reference_cams', 'True')
    ours = json.loads((npy / 'eval_cam.json').read_text())
    theirs = json.loads((npz / 'eval_cam.json').read_text())
    assert without(ours, 'cam_out_dir', 'provenance') == without(theirs, 'cam_out_dir',
                                                                 'provenance')
    assert ours['provenance']['eval_cam']['settings']['import_reference_cams'] is True
    ref = EVAL_CAM_REF[split]
    assert ours['n_images'] == ref['n_images']
    assert ours['miou'] == pytest.approx(ref['miou'], rel=1e-9)
    np.testing.assert_allclose(np.array(ours['sweep']), np.array(ref['sweep_thres_miou']),
                               rtol=1e-9)


def test_cam_to_ir_label_on_reference_npy_reproduces_reference(tmp_path):
    shutil.copytree(REF / 'cams_npy', tmp_path / 'cams')
    voc(tmp_path, '--train_list', 'trainval', '--import_reference_cams', 'True',
        '--cam_to_ir_label_pass', 'True')
    names = sorted(os.listdir(REF / 'ir_label_default'))
    assert sorted(os.listdir(tmp_path / 'ir_label')) == names
    for name in names:
        np.testing.assert_array_equal(read_png(tmp_path / 'ir_label' / name),
                                      read_png(REF / 'ir_label_default' / name))


def test_make_sem_seg_on_reference_npy_equals_npz(tmp_path, irn_reference_weights):
    npz, npy = tmp_path / 'npz', tmp_path / 'npy'
    shutil.copytree(REF / 'cams', npz / 'cams')
    shutil.copytree(REF / 'cams_npy', npy / 'cams')
    args = ('--infer_list', 'trainval', '--irn_weights_name', irn_reference_weights,
            '--sem_seg_bg_thres', '0.25', '--make_sem_seg_pass', 'True')
    voc(npz, *args)
    voc(npy, *args, '--import_reference_cams', 'True')
    names = sorted(os.listdir(REF / 'sem_seg'))
    assert sorted(os.listdir(npy / 'sem_seg')) == names
    total = agree = 0
    for name in names:
        ours = read_png(npy / 'sem_seg' / name)
        np.testing.assert_array_equal(ours, read_png(npz / 'sem_seg' / name))
        ref = read_png(REF / 'sem_seg' / name)
        total += ref.size
        agree += int((ours == ref).sum())
    assert agree / total >= 0.999


@pytest.mark.parametrize('stage, extra', [
    ('eval_cam', ('--chainer_eval_set', 'trainval')),
    ('cam_to_ir_label', ('--train_list', 'trainval')),
    ('make_sem_seg', ('--infer_list', 'trainval')),
])
def test_npy_cams_without_the_flag_are_refused_naming_it(tmp_path, stage, extra):
    shutil.copytree(REF / 'cams_npy', tmp_path / 'cams')
    with pytest.raises(ValueError, match=r'--import_reference_cams True .*trusted source'):
        voc(tmp_path, *extra, '--%s_pass' % stage, 'True')


def test_reader_gives_the_arrays_of_our_files_and_names_bad_ones(tmp_path):
    assert export_cams(str(REF / 'cams'), str(tmp_path)) == len(all_ids())
    exported, reference = CamFiles(str(tmp_path), True), CamFiles(str(REF / 'cams_npy'), True)
    for image_id in all_ids():
        ours = CamFiles(str(REF / 'cams')).load(image_id)
        for cams in (exported.load(image_id), reference.load(image_id)):
            assert sorted(cams) == sorted(ours)
            for name, array in ours.items():
                assert cams[name].dtype == array.dtype
                np.testing.assert_array_equal(cams[name], array)
    np.save(tmp_path / 'plain.npy', np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match='plain.npy is not a readable CAM .npy'):
        exported.load('plain')
    np.save(tmp_path / 'partial.npy', {'keys': np.zeros(1, np.int64)}, allow_pickle=True)
    with pytest.raises(ValueError, match=r"partial.npy lacks \['high_res'\]"):
        exported.load('partial', required=('keys', 'high_res'))


# ------------------------------------------------------------ only the eval split is scored


def corrupt_extra(folder, suffix):
    """A file outside every list that cannot be read: any stage reading it fails."""
    (folder / ('not_in_any_list' + suffix)).write_bytes(b'not a file of this format')


@pytest.mark.parametrize('split', sorted(EVAL_CAM_REF))
def test_eval_cam_scores_exactly_the_eval_split(tmp_path, split):
    more, only = tmp_path / 'more', tmp_path / 'only'
    shutil.copytree(REF / 'cams', more / 'cams')
    corrupt_extra(more / 'cams', '.npz')
    (only / 'cams').mkdir(parents=True)
    for image_id in split_ids(split):
        shutil.copy(REF / 'cams' / (image_id + '.npz'), only / 'cams')
    results = []
    for ws in (more, only):
        voc(ws, '--eval_cam_pass', 'True', '--eval_cam_best', 'True', '--chainer_eval_set', split)
        results.append(json.loads((ws / 'eval_cam.json').read_text()))
    assert without(results[0], 'cam_out_dir') == without(results[1], 'cam_out_dir')
    ref = EVAL_CAM_REF[split]
    assert results[0]['n_images'] == len(split_ids(split)) == ref['n_images']
    assert results[0]['miou'] == pytest.approx(ref['miou'], rel=1e-9)
    n = len(ref['confusion'])
    np.testing.assert_array_equal(np.array(results[0]['confusion'])[:n, :n], ref['confusion'])


@pytest.mark.parametrize('split', sorted(EVAL_SEM_SEG_REF))
def test_eval_sem_seg_scores_exactly_the_eval_split(tmp_path, split):
    more, only = tmp_path / 'more', tmp_path / 'only'
    shutil.copytree(REF / 'sem_seg', more / 'sem_seg')
    corrupt_extra(more / 'sem_seg', '.png')
    (only / 'sem_seg').mkdir(parents=True)
    for image_id in split_ids(split):
        shutil.copy(REF / 'sem_seg' / (image_id + '.png'), only / 'sem_seg')
    results = []
    for ws in (more, only):
        voc(ws, '--eval_sem_seg_pass', 'True', '--chainer_eval_set', split)
        results.append(json.loads((ws / 'eval_sem_seg.json').read_text()))
    assert without(results[0], 'sem_seg_out_dir') == without(results[1], 'sem_seg_out_dir')
    ref = EVAL_SEM_SEG_REF[split]
    assert results[0]['n_images'] == len(split_ids(split))
    assert results[0]['miou'] == pytest.approx(ref['miou'], rel=1e-9)
    n = len(ref['iou'])
    np.testing.assert_allclose(nan_list(results[0]['iou'][:n]), nan_list(ref['iou']), rtol=1e-9)


# ------------------------------------------------------------ COCO: the authors' mask folder


@pytest.fixture(scope='module')
def coco(tmp_path_factory):
    root = tmp_path_factory.mktemp('coco')
    generate_demo_coco(str(root), n_images=6, seed=5)
    return root


def distinct_mask(shape, image_id):
    """Content no rendering of the annotations gives: a per-image diagonal pattern over 0..80."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return ((yy + 2 * xx + image_number(image_id)) % 81).astype(np.uint8)


def test_coco_reads_the_authors_mask_folder(tmp_path, coco):
    root = tmp_path / 'coco'
    shutil.copytree(coco, root)
    rendered = COCO14(str(coco))
    source = COCO14(str(root))
    written = {}
    for split, folder in (('train', 'train2014'), ('val', 'val2014')):
        for image_id in source.ids(split):
            mask = distinct_mask(rendered.read_mask(image_id).shape, image_id)
            save_png(str(root / 'mask' / folder / ('%d.png' % image_number(image_id))), mask)
            written[image_id] = mask
    for image_id, mask in written.items():
        ours = source.read_mask(image_id)
        np.testing.assert_array_equal(ours, mask)
        assert not np.array_equal(ours, rendered.read_mask(image_id))
    assert not (root / 'SegmentationClass').exists()
    train = source.ids('train')
    os.remove(root / 'mask' / 'train2014' / ('%d.png' % image_number(train[0])))
    with pytest.raises(FileNotFoundError, match=r"mask .*train2014.%d\.png of %s does not exist: "
                       r".* the authors' mask folder" % (image_number(train[0]), train[0])):
        source.read_mask(train[0])


def test_eval_sem_seg_scores_against_the_authors_masks(tmp_path, coco):
    root = tmp_path / 'coco'
    shutil.copytree(coco, root)
    rendered = COCO14(str(coco))
    for image_id in rendered.ids('train'):
        mask = distinct_mask(rendered.read_mask(image_id).shape, image_id)
        save_png(str(root / 'mask' / 'train2014' / ('%d.png' % image_number(image_id))), mask)
        save_png(str(tmp_path / 'sem_seg' / (image_id + '.png')), mask)
    run_sample.main(['--dataset', 'coco14', '--mscoco_root', str(root), '--work_space',
                     str(tmp_path), '--chainer_eval_set', 'train', '--eval_sem_seg_pass', 'True'])
    result = json.loads((tmp_path / 'eval_sem_seg.json').read_text())
    assert result['miou'] == 1.0 and len(result['iou']) == 81


# ------------------------------------------------------------ COCO: the authors' protocol


def test_protocol_takes_the_smallest_image_ids():
    ids = ['COCO_train2014_%012d' % n for n in (90, 9, 1000, 25, 77)]
    assert protocol.first_images(ids, 3) == ['COCO_train2014_%012d' % n for n in (9, 25, 77)]
    assert protocol.reference_protocol('coco14', 'reference')
    assert not protocol.reference_protocol('coco14', 'full')
    assert not protocol.reference_protocol('voc12', 'reference')
    assert protocol.cam_image_ids(ids, True) == sorted(ids)
    assert protocol.cam_image_ids(ids, False) == ids
    assert protocol.eval_cam_image_ids(ids, True) == sorted(ids)
    assert (protocol.CAM_IMAGES, protocol.EVAL_CAM_IMAGES) == (10000, 9999)
    assert protocol.SWEEP_THRESHOLDS == tuple(np.arange(10, 60, 2) / 100)


@pytest.fixture
def small_protocol(monkeypatch):
    """The reference protocol with 4 CAM images and 3 scored ones, for a 6-image set."""
    monkeypatch.setattr(protocol, 'CAM_IMAGES', 4)
    monkeypatch.setattr(protocol, 'EVAL_CAM_IMAGES', 3)


def write_synthetic_cams(source, ids, cam_dir):
    """Deterministic CAMs of the present classes (no network needed)."""
    rng = np.random.default_rng(0)
    for image_id in ids:
        h, w = source.read_mask(image_id).shape
        keys = np.array(source.image_label_ids(image_id), np.int64)
        save_npz(os.path.join(cam_dir, image_id + '.npz'), keys=keys,
                 cam=rng.random((len(keys), math.ceil(h / 4), math.ceil(w / 4)), np.float32),
                 high_res=rng.random((len(keys), h, w), np.float32))


def coco_sample(root, work_space, *extra):
    return run_sample.main(['--dataset', 'coco14', '--mscoco_root', str(root), '--work_space',
                            str(work_space), '--num_workers', '0', '--device', 'cpu']
                           + [str(e) for e in extra])


def expected_miou(source, ids, cam_dir, threshold):
    """mIoU of the CAMs of ``ids`` at ``threshold``, computed image by image."""
    conf = 0
    for image_id in ids:
        cams = CamFiles(str(cam_dir)).load(image_id)
        conf = conf + confusion_matrix(cam_to_label(cams['high_res'], cams['keys'], threshold),
                                       source.read_mask(image_id), source.n_classes + 1)
    return mean_iou(iou_from_confusion(conf))


def test_eval_cam_reference_protocol(tmp_path, coco, small_protocol):
    source = COCO14(str(coco))
    train = source.ids('train')
    write_synthetic_cams(source, train, str(tmp_path / 'cams'))
    coco_sample(coco, tmp_path, '--eval_cam_pass', 'True', '--eval_cam_best', 'True',
                '--chainer_eval_set', 'train')
    result = json.loads((tmp_path / 'eval_cam.json').read_text())
    scored = sorted(train)[:3]
    assert result['coco_protocol'] == 'reference' and result['n_images'] == 3
    assert result['miou'] == pytest.approx(expected_miou(source, scored, tmp_path / 'cams', 0.15),
                                           rel=1e-12)
    thresholds = [row[0] for row in result['sweep']]
    assert thresholds == list(protocol.SWEEP_THRESHOLDS)
    mious = [expected_miou(source, scored, tmp_path / 'cams', t) for t in thresholds]
    np.testing.assert_allclose([row[1] for row in result['sweep']], mious, rtol=1e-12)
    early = original_early_stop_best(mious, thresholds)
    assert result['original_early_stop_best']['threshold'] == early[0]
    assert result['original_early_stop_best']['miou'] == pytest.approx(early[1], rel=1e-12)
    assert result['best']['miou'] == pytest.approx(max(mious), rel=1e-12)

    coco_sample(coco, tmp_path, '--eval_cam_pass', 'True', '--eval_cam_best', 'True',
                '--chainer_eval_set', 'train', '--coco_protocol', 'full')
    full = json.loads((tmp_path / 'eval_cam.json').read_text())
    assert full['n_images'] == len(train)
    assert [row[0] for row in full['sweep']] == [t / 100 for t in range(5, 60)]
    assert full['miou'] == pytest.approx(expected_miou(source, train, tmp_path / 'cams', 0.15),
                                         rel=1e-12)


class _DatasetBuilt(Exception):
    pass


def irn_training_images(coco, work_space, monkeypatch):
    """The ids train_irn builds its affinity dataset from (the stage stops there)."""
    import step.train_irn

    def capture(source, ids, *args, **kwargs):
        raise _DatasetBuilt(sorted(ids))
    monkeypatch.setattr(step.train_irn, 'AffinityDataset', capture)
    with pytest.raises(_DatasetBuilt) as built:
        coco_sample(coco, work_space, '--train_list', 'train', '--irn_crop_size', '96',
                    '--train_irn_pass', 'True')
    return built.value.args[0]


def test_cam_stages_reference_protocol(tmp_path, coco, small_protocol, monkeypatch):
    source = COCO14(str(coco))
    made = sorted(source.ids('train'))[:4]
    weights = tmp_path / 'cam.safetensors'
    save_weights(CAM(source.n_classes), str(weights))
    coco_sample(coco, tmp_path, '--infer_list', 'train', '--train_list', 'train',
                '--chainer_eval_set', 'train', '--cam_weights_name', weights,
                '--cam_scales', '1.0', '--make_cam_pass', 'True', '--cam_to_ir_label_pass', 'True')
    assert sorted(os.listdir(tmp_path / 'cams')) == [i + '.npz' for i in made]
    assert sorted(os.listdir(tmp_path / 'ir_label')) == [i + '.png' for i in made]
    assert irn_training_images(coco, tmp_path, monkeypatch) == made
    for image_id in made:
        save_png(str(tmp_path / 'sem_seg' / (image_id + '.png')), source.read_mask(image_id))
    coco_sample(coco, tmp_path, '--chainer_eval_set', 'train', '--eval_sem_seg_pass', 'True')
    result = json.loads((tmp_path / 'eval_sem_seg.json').read_text())
    assert result['n_images'] == 4 and result['miou'] == 1.0
    with pytest.raises(FileNotFoundError, match='pseudo masks are missing'):
        coco_sample(coco, tmp_path, '--chainer_eval_set', 'train', '--coco_protocol', 'full',
                    '--eval_sem_seg_pass', 'True')


def test_main_threshold_outside_the_sweep_does_not_stop_it():
    """--cam_eval_thres 0.15 is scored but is no step of the COCO sweep (0.10, 0.12, ...)."""
    args = SimpleNamespace(dataset='coco14', coco_protocol='reference', eval_cam_best=True,
                           cam_eval_thres=0.15)
    thresholds = sweep_thresholds(args)
    assert thresholds == sorted(protocol.SWEEP_THRESHOLDS + (0.15,))
    rising = np.linspace(0.2, 0.4, len(thresholds))
    rising[thresholds.index(0.15)] = 0.0          # a dip at the main threshold only
    summary = sweep_summary(SimpleNamespace(mious=lambda: rising), thresholds, args)
    assert [row[0] for row in summary['sweep']] == list(protocol.SWEEP_THRESHOLDS)
    last = protocol.SWEEP_THRESHOLDS[-1]
    assert summary['original_early_stop_best'] == {'threshold': last, 'miou': rising[-1]}
    assert summary['best'] == {'threshold': last, 'miou': rising[-1]}
