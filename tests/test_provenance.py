"""Provenance (issue 13, item 1), through run_sample.py: outputs made from other weights,
settings or upstream outputs are redone (or refused with --overwrite False), training
states resume only from the same inputs, evaluation JSONs say what made their numbers."""
import hashlib
import json
import os
import shutil

import pytest
import torch

from conftest import REF, VOC_MINI
from misc.io import release_outputs
from net.checkpoint import load_weights, save_weights
from net.deeplab import build_segmentation_model
from net.resnet50_clims import CAM
from pipeline import provenance
import run_sample
from voc12.devkit import VOC12


def sha256(path):
    return hashlib.sha256(open(path, 'rb').read()).hexdigest()


def common(work_space, *extra):
    return ['--voc12_root', str(VOC_MINI), '--work_space', str(work_space), '--device', 'cpu',
            '--num_workers', '0'] + [str(a) for a in extra]


def log_of(work_space):
    return (work_space / 'run.log').read_text()


def pngs(folder):
    return {n: (folder / n).read_bytes() for n in sorted(os.listdir(folder)) if n.endswith('.png')}


def rolled_clims_weights(reference, path, shift):
    """The reference weights with the classifier's rows rolled by ``shift`` classes."""
    model = load_weights(CAM(VOC12(str(VOC_MINI)).n_classes), str(reference))
    with torch.no_grad():
        model.classifier.weight.copy_(model.classifier.weight.roll(shift, dims=0))
    save_weights(model, str(path))
    return path


def cams_and_score(work_space, weights, *extra):
    run_sample.main(common(work_space, '--infer_list', 'train', '--chainer_eval_set', 'train',
                           '--cam_scales', '1.0', '--clims_weights_name', weights,
                           '--make_clims_pass', 'True', '--eval_cam_pass', 'True', *extra))
    return json.loads((work_space / 'eval_cam.json').read_text())


def test_new_weights_redo_the_cams(tmp_path, clims_reference_weights):
    ws = tmp_path / 'ws'
    ws.mkdir()
    weights = rolled_clims_weights(clims_reference_weights, ws / 'clims.safetensors', 1)
    old = cams_and_score(ws, weights)
    assert old['provenance']['make_clims']['files'] == {'clims_weights_name': sha256(weights)}
    n_cams = len([n for n in os.listdir(ws / 'cams') if n.endswith('.npz')])

    cams_and_score(ws, weights)                                    # same inputs: reused
    assert '%d already done' % n_cams in log_of(ws)

    rolled_clims_weights(clims_reference_weights, weights, 2)      # new weights, same path
    with pytest.raises(ValueError, match=r'make_clims: %d files in .*cams were made from other '
                       r'inputs.*files/clims_weights_name: %s -> %s.*--overwrite False'
                       % (n_cams, old['provenance']['make_clims']['files']['clims_weights_name']
                          [:12], sha256(weights)[:12])):
        cams_and_score(ws, weights, '--overwrite', 'False')
    redone = cams_and_score(ws, weights)
    assert '%d files in %s were made with other weights or settings: removed' \
        % (n_cams, ws / 'cams') in log_of(ws)
    fresh = cams_and_score(tmp_path / 'fresh', weights)
    assert redone['miou'] == fresh['miou'] != old['miou']
    assert redone['confusion'] == fresh['confusion']
    assert redone['provenance'] == fresh['provenance']
    made = redone['provenance']['make_clims']
    assert made['files'] == {'clims_weights_name': sha256(weights)}
    assert made['settings']['cam_scales'] == [1.0]
    assert redone['provenance']['eval_cam']['settings']['cam_eval_thres'] == 0.15


def ir_labels(work_space, fg, *extra):
    run_sample.main(common(work_space, '--train_list', 'trainval', '--conf_fg_thres', fg,
                           '--cam_to_ir_label_pass', 'True', *extra))
    return pngs(work_space / 'ir_label')


def train_irn(work_space, *extra):
    run_sample.main(common(work_space, '--train_list', 'trainval', '--infer_list', 'trainval',
                           '--irn_crop_size', '96', '--irn_batch_size', '2',
                           '--irn_num_epoches', '1', '--train_irn_pass', 'True', *extra))
    return torch.load(work_space / 'res50_irn.train_state.pt', weights_only=True)


def with_reference_cams(work_space):
    shutil.copytree(REF / 'cams', work_space / 'cams')
    return work_space


def test_changed_labels_are_redone_and_not_trained_on(tmp_path):
    ws = with_reference_cams(tmp_path / 'ws')
    labels_030 = ir_labels(ws, 0.30)
    first = train_irn(ws)
    assert first['epochs_done'] == 1
    train_irn(ws)
    assert 'train_irn: resuming after epoch 1' in log_of(ws)

    with pytest.raises(ValueError, match=r'cam_to_ir_label: %d files in .*ir_label were made '
                       r'from other inputs.*settings/conf_fg_thres: 0.3 -> 0.5' % len(labels_030)):
        ir_labels(ws, 0.50, '--overwrite', 'False')
    assert pngs(ws / 'ir_label') == labels_030                     # refused: nothing lost
    labels_050 = ir_labels(ws, 0.50)
    assert 'were made with other weights or settings: removed (settings/conf_fg_thres: ' \
        '0.3 -> 0.5)' in log_of(ws)
    assert labels_050 == ir_labels(with_reference_cams(tmp_path / 'fresh'), 0.50)
    assert labels_050 != labels_030

    with pytest.raises(ValueError, match=r'train_irn: the training state .* was trained from '
                       r'other inputs.*upstream/ir_label/settings/conf_fg_thres: 0.3 -> 0.5'):
        train_irn(ws, '--overwrite', 'False')
    started_over = train_irn(ws)
    log = log_of(ws)
    assert 'train_irn: not resuming' in log and 'starting over' in log
    assert log.count('train_irn: resuming after epoch 1') == 1     # only the matching rerun
    fresh = train_irn(tmp_path / 'fresh')
    for key in fresh['model']:
        assert torch.equal(started_over['model'][key], fresh['model'][key]), key
    assert any(not torch.equal(first['model'][k], fresh['model'][k]) for k in fresh['model'])

    record = json.loads((ws / 'res50_irn.safetensors.provenance.json').read_text())
    assert record['sha256'] == sha256(ws / 'res50_irn.safetensors')
    assert record['upstream']['ir_label']['settings']['conf_fg_thres'] == 0.5
    run_sample.main(common(ws, '--infer_list', 'trainval', '--chainer_eval_set', 'trainval',
                           '--make_sem_seg_pass', 'True', '--eval_sem_seg_pass', 'True'))
    lineage = json.loads((ws / 'eval_sem_seg.json').read_text())['provenance']
    assert set(lineage) == {'cam_to_ir_label', 'train_irn', 'make_sem_seg', 'eval_sem_seg'}
    assert lineage['make_sem_seg']['files'] == {
        'irn_weights_name': sha256(ws / 'res50_irn.safetensors')}
    assert lineage['make_sem_seg']['unrecorded'] == ['cams']    # copied in: no record
    assert lineage['cam_to_ir_label']['settings']['conf_fg_thres'] == 0.5
    assert lineage['train_irn']['settings']['irn_num_epoches'] == 1


def test_eval_seg_json_names_the_weights_and_settings(tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / 'seg.safetensors'
    save_weights(build_segmentation_model('deeplabv2', VOC12(str(VOC_MINI)).n_classes + 1),
                 str(weights), {'arch': 'deeplabv2'})
    args = common(tmp_path, '--seg_weights_name', weights, '--seg_eval_set', 'val',
                  '--seg_eval_scales', '1.0', '--eval_seg_pass', 'True')
    run_sample.main(args)
    lineage = json.loads((tmp_path / 'eval_seg.json').read_text())['provenance']
    assert lineage['eval_seg']['files'] == {'seg_weights_name': sha256(weights)}
    assert lineage['eval_seg']['settings']['seg_eval_scales'] == [1.0]
    assert lineage['eval_seg']['settings']['seg_eval_flip'] is True
    assert lineage['eval_seg']['unrecorded'] == ['seg_weights_name']
    predictions = pngs(tmp_path / 'seg_pred'), pngs(tmp_path / 'seg_pred_color')
    with pytest.raises(ValueError, match=r'eval_seg: %d files in .*seg_pred, .*seg_pred_color '
                       r'were made from other inputs.*settings/seg_eval_flip: true -> false'
                       % sum(map(len, predictions))):
        run_sample.main(args + ['--seg_eval_flip', 'False', '--overwrite', 'False'])
    assert (pngs(tmp_path / 'seg_pred'), pngs(tmp_path / 'seg_pred_color')) == predictions


def clims_record(**settings):
    """A train_qa_clims record with the given settings, as weights carry it."""
    return {'stage': 'train_qa_clims', 'settings': dict(settings, dataset='voc12'),
            'files': {'cam_weights_name': None}, 'upstream': {'cam_weights_name': None}}


def cams_record_over(clims):
    return {'stage': 'make_clims', 'settings': {'dataset': 'voc12', 'cam_scales': [1.0]},
            'files': {'clims_weights_name': 'f' * 64}, 'upstream': {'clims_weights_name': clims}}


OLD_NAMES = {'cam_weight_decay': 1e-4, 'cam_crop_size': 512, 'cam_resize_long': [320, 640]}
NEW_NAMES = {'clims_weight_decay': 1e-4, 'clims_crop_size': 512, 'clims_resize_long': [320, 640]}


def test_records_with_the_old_qa_clims_setting_names_read_as_the_new_ones():
    assert provenance.current_names(clims_record(**OLD_NAMES)) == clims_record(**NEW_NAMES)
    nested = provenance.current_names(cams_record_over(clims_record(**OLD_NAMES)))
    assert nested == cams_record_over(clims_record(**NEW_NAMES))
    train_cam = {'stage': 'train_cam', 'settings': {'cam_crop_size': 512}, 'files': {},
                 'upstream': {}}
    assert provenance.current_names(train_cam) == train_cam


@pytest.mark.parametrize('old_crop, kept', [(512, True), (448, False)])
def test_outputs_recorded_under_the_old_names_are_reused_when_the_values_match(tmp_path, old_crop,
                                                                                kept):
    cams = tmp_path / 'cams'
    cams.mkdir()
    (cams / 'a.npz').write_bytes(b'cams of a')
    old = cams_record_over(clims_record(**dict(OLD_NAMES, cam_crop_size=old_crop)))
    (tmp_path / 'cams.provenance.json').write_text(json.dumps(old))
    current = cams_record_over(clims_record(**NEW_NAMES))
    if kept:
        provenance.claim_outputs(current, [str(cams)], '.npz', overwrite=False)
        assert (cams / 'a.npz').read_bytes() == b'cams of a'
    else:
        with pytest.raises(ValueError, match='upstream/clims_weights_name/settings/'
                                             'clims_crop_size: 448 -> 512'):
            provenance.claim_outputs(current, [str(cams)], '.npz', overwrite=False)
    release_outputs()
