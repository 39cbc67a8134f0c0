"""What a trusted pipeline promises, tried through run_sample.py as a user would:
bad values are argparse errors naming the flag; bad lists and files are errors
naming the file and the fix, and nothing is lost; unreadable outputs are
redone on a rerun; two runs never break each other's outputs."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REF, VOC_MINI, dead_pid, reference_ids, run_sample_cmd
from data.registry import DATASETS
from misc import io as mio
from net.checkpoint import load_weights, save_weights
from net.registry import RESNET50
from net.resnet50_clims import CAM
from pipeline.stage import pending_shard
import run_sample


def voc_args(work_space, *extra):
    return ['--voc12_root', str(VOC_MINI), '--work_space', str(work_space), '--device', 'cpu',
            '--num_workers', '0'] + [str(e) for e in extra]


def refused(capsys, argv):
    """The message of run_sample's argparse error (exit status 2) for ``argv``."""
    with pytest.raises(SystemExit) as stop:
        run_sample.main(argv)
    assert stop.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert ': error: ' in last
    return last.split(': error: ', 1)[1]


# ------------------------------------------------------------------ values at the door

@pytest.mark.parametrize('flag, value, allowed', [
    ('--conf_fg_thres', '2', 'a number in [0, 1]'),
    ('--conf_bg_thres', '-0.1', 'a number in [0, 1]'),
    ('--cam_eval_thres', '-1', 'a number in [0, 1]'),
    ('--sem_seg_bg_thres', 'x', 'a number in [0, 1]'),
    ('--cam_num_epoches', '-1', 'an integer >= 1'),
    ('--clims_num_epoches', '0', 'an integer >= 1'),
    ('--irn_num_epoches', '0', 'an integer >= 1'),
    ('--seg_num_iters', '0', 'an integer >= 1'),
    ('--cam_batch_size', '0', 'an integer >= 1'),
    ('--clims_batch_size', '-4', 'an integer >= 1'),
    ('--irn_batch_size', '0', 'an integer >= 1'),
    ('--seg_batch_size', '0', 'an integer >= 1'),
    ('--cam_scales', '1.0,0', 'a comma-separated list of numbers > 0'),
    ('--cam_scales', ',', 'a comma-separated list of numbers > 0'),
    ('--seg_eval_scales', '1.0,-0.5', 'a comma-separated list of numbers > 0'),
    ('--irn_rescale', '0,1', 'a comma-separated list of numbers > 0'),
    ('--cam_resize_long', '640,320', 'two integers "MIN,MAX" with 1 <= MIN <= MAX'),
    ('--cam_crop_size', '%d' % (RESNET50.stride - 1), 'an integer >= %d' % RESNET50.stride),
    ('--irn_crop_size', '%d' % (run_sample.IRN_MIN_CROP - 1),
     'an integer >= %d' % run_sample.IRN_MIN_CROP),
    ('--seg_crop_size', '%d' % (run_sample.SEG_OUTPUT_STRIDE - 1),
     'an integer >= %d' % run_sample.SEG_OUTPUT_STRIDE),
])
def test_a_bad_value_is_an_argparse_error_naming_the_flag_and_range(
        tmp_path, capsys, flag, value, allowed):
    work_space = tmp_path / 'ws'
    message = refused(capsys, voc_args(work_space, flag, value, '--eval_cam_pass', 'True'))
    assert message.startswith('argument %s: expected %s' % (flag, allowed))
    assert repr(value) in message
    assert not work_space.exists()


@pytest.mark.parametrize('extra, expected', [
    (('--conf_fg_thres', '0.1', '--conf_bg_thres', '0.2'),
     '--conf_fg_thres 0.1 must be above --conf_bg_thres 0.2'),
    (('--conf_fg_thres', '0.3', '--conf_bg_thres', '0.3'),
     '--conf_fg_thres 0.3 must be above --conf_bg_thres 0.3'),
    (('--irn_rescale', '1.5,0.5'), '--irn_rescale 1.5,0.5: expected "MIN,MAX" with 0 < MIN <= MAX'),
    (('--irn_rescale', '0.5'), '--irn_rescale 0.5: expected "MIN,MAX"'),
])
def test_flags_that_contradict_each_other_are_an_argparse_error(tmp_path, capsys, extra,
                                                                expected):
    work_space = tmp_path / 'ws'
    message = refused(capsys, voc_args(work_space, *extra, '--cam_to_ir_label_pass', 'True'))
    assert message.startswith(expected)
    assert not work_space.exists()


def test_the_bounds_themselves_are_accepted():
    args = run_sample.build_parser().parse_args([
        '--conf_fg_thres', '1', '--conf_bg_thres', '0', '--cam_eval_thres', '0',
        '--cam_num_epoches', '1', '--cam_scales', '0.25', '--irn_rescale', '0.5,0.5,1.5',
        '--cam_crop_size', str(RESNET50.stride),
        '--irn_crop_size', str(run_sample.IRN_MIN_CROP),
        '--seg_crop_size', str(run_sample.SEG_OUTPUT_STRIDE), '--cam_resize_long', '7,7'])
    run_sample.resolve_args(args)
    assert (args.conf_fg_thres, args.conf_bg_thres, args.cam_scales) == (1.0, 0.0, (0.25,))
    assert args.irn_rescale == (0.5, 0.5, 1.5) and args.cam_resize_long == (7, 7)


def test_the_command_line_exits_with_status_2_and_the_message(tmp_path):
    result = subprocess.run(run_sample_cmd('--work_space', tmp_path / 'ws', '--irn_batch_size',
                                           '0', '--train_irn_pass', 'True'),
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "run_sample.py: error: argument --irn_batch_size: expected an integer >= 1, got '0'")
    assert not (tmp_path / 'ws').exists()


# ------------------------------------------------------------------ lists

def test_a_repeated_id_in_a_list_names_the_file_and_both_lines(tmp_path):
    ids = reference_ids('train')
    listed = tmp_path / 'scored.txt'
    listed.write_text('\n'.join(ids + [ids[0]]) + '\n')
    with pytest.raises(ValueError, match=r'image list .*scored\.txt, line %d: %s is already '
                                         r'listed on line 1; remove the repeated line'
                                         % (len(ids) + 1, ids[0])):
        run_sample.main(voc_args(tmp_path, '--cam_out_dir', REF / 'cams', '--chainer_eval_set',
                                 listed, '--eval_cam_pass', 'True'))
    assert not (tmp_path / 'eval_cam.json').exists()


def test_a_coco_image_listed_twice_in_the_annotations_is_named(tmp_path):
    from coco14.dataset import COCO14
    from tools.make_demo_coco import generate_demo_coco
    root = tmp_path / 'coco'
    generate_demo_coco(str(root), n_images=4, seed=1)
    path = root / 'annotations' / 'instances_train2014.json'
    data = json.loads(path.read_text())
    n_images = len(data['images'])
    data['images'].append(dict(data['images'][0], id=10 ** 6))
    path.write_text(json.dumps(data))
    stem = os.path.splitext(data['images'][0]['file_name'])[0]
    with pytest.raises(ValueError, match=r'instances_train2014\.json lists the image %s twice '
                                         r'\(images\[0\] and images\[%d\]\)' % (stem, n_images)):
        COCO14(str(root)).ids('train')


# ------------------------------------------------------------------ files

@pytest.fixture(scope='module')
def clims_safetensors(tmp_path_factory, clims_reference_weights):
    """The fixture's QA-CLIMS weights as our safetensors file."""
    path = tmp_path_factory.mktemp('st') / 'res50_qa_clims.safetensors'
    save_weights(load_weights(CAM(DATASETS['voc12'].n_classes), str(clims_reference_weights)),
                 str(path))
    return path


def make_clims_args(work_space, weights):
    return voc_args(work_space, '--infer_list', 'train', '--clims_weights_name', weights,
                    '--make_clims_pass', 'True')


def truncated_copy(source, target, keep=0.5):
    data = source.read_bytes()
    target.write_bytes(data[:int(len(data) * keep)])
    return target


@pytest.mark.parametrize('kind, expected', [
    ('empty.pth', r'weights file .*empty\.pth is empty \(0 bytes\): copy or download it again'),
    ('half.pth', r'weights file .*half\.pth cannot be read \(.*\): it is truncated or not a '
                 r'PyTorch file; copy or download it again'),
    ('empty.safetensors', r'weights file .*empty\.safetensors is empty \(0 bytes\)'),
    ('half.safetensors', r'weights file .*half\.safetensors is not a complete safetensors file '
                         r'\(.*\): it is truncated or damaged; copy or download it again'),
])
def test_an_empty_or_truncated_weights_file_is_named(tmp_path, clims_reference_weights,
                                                     clims_safetensors, kind, expected):
    weights = tmp_path / kind
    if kind.startswith('empty'):
        weights.write_bytes(b'')
    else:
        truncated_copy(clims_safetensors if kind.endswith('.safetensors')
                       else clims_reference_weights, weights)
    with pytest.raises(ValueError, match=expected):
        run_sample.main(make_clims_args(tmp_path / 'ws', weights))
    assert not any((tmp_path / 'ws' / 'cams').glob('*.npz'))


def test_a_refused_pickle_says_why_and_never_suggests_weights_only_false(tmp_path):
    weights = tmp_path / 'objects.pth'
    torch.save({'conv.weight': np.zeros(3)}, weights)
    with pytest.raises(ValueError) as error:
        run_sample.main(make_clims_args(tmp_path / 'ws', weights))
    message = str(error.value)
    assert 'objects.pth holds Python objects other than tensors' in message
    assert 'would run code from the file' in message
    assert 'weights_only' not in message and 'safe_globals' not in message


def test_an_empty_cam_file_is_named_with_the_fix(tmp_path):
    shutil.copytree(REF / 'cams', tmp_path / 'cams')
    broken = tmp_path / 'cams' / (reference_ids('train')[0] + '.npz')
    broken.write_bytes(b'')
    with pytest.raises(ValueError, match=r'%s is not a readable \.npz file \(.*\): it is empty, '
                                         r'truncated or not an \.npz; delete it and rerun the '
                                         r'stage that writes it' % broken.name):
        run_sample.main(voc_args(tmp_path, '--chainer_eval_set', 'train', '--eval_cam_pass',
                                 'True'))


def test_a_truncated_label_png_is_named_with_the_fix(tmp_path):
    shutil.copytree(REF / 'sem_seg', tmp_path / 'sem_seg')
    broken = tmp_path / 'sem_seg' / (reference_ids('train')[0] + '.png')
    truncated_copy(broken, broken, keep=0.6)
    with pytest.raises(ValueError, match=r'mask .*%s cannot be read as a class-id PNG .*delete it '
                                         r'and rerun that stage' % broken.name):
        run_sample.main(voc_args(tmp_path, '--chainer_eval_set', 'train', '--eval_sem_seg_pass',
                                 'True'))


def test_a_corrupt_training_state_says_to_delete_it(tmp_path):
    state = tmp_path / 'res50_cam.train_state.pt'
    state.write_bytes(b'PK\x03\x04 not a whole zip')
    with pytest.raises(ValueError, match=r'training state .*res50_cam\.train_state\.pt cannot be '
                                         r'read \(.*\): it is truncated or not a PyTorch file; '
                                         r'delete it to start the training over'):
        run_sample.main(voc_args(tmp_path, '--train_list', 'train', '--val_list', '',
                                 '--cam_batch_size', '2', '--cam_num_epoches', '1',
                                 '--cam_crop_size', '64', '--cam_resize_long', '48,96',
                                 '--train_cam_pass', 'True'))
    assert state.read_bytes() == b'PK\x03\x04 not a whole zip'
    assert not (tmp_path / 'res50_cam.safetensors').exists()


def test_pending_outputs_include_unreadable_ones(tmp_path):
    """.npz: the zip directory (a truncated file has none); .png: signature and end chunk."""
    ids = reference_ids('trainval')
    for name in ids[:3]:
        shutil.copy(REF / 'cams' / (name + '.npz'), tmp_path / (name + '.npz'))
    truncated_copy(REF / 'cams' / (ids[1] + '.npz'), tmp_path / (ids[1] + '.npz'), keep=0.9)
    (tmp_path / (ids[2] + '.npz')).write_bytes(b'')
    todo, shard = pending_shard(ids, str(tmp_path), '.npz')
    assert todo == shard == ids[1:]
    pngs = tmp_path / 'png'
    shutil.copytree(REF / 'sem_seg', pngs)
    truncated_copy(pngs / (ids[0] + '.png'), pngs / (ids[0] + '.png'), keep=0.95)
    assert pending_shard(ids, str(pngs), '.png')[0] == [ids[0]]


def ir_label_args(work_space):
    return voc_args(work_space, '--cam_out_dir', REF / 'cams', '--train_list', 'trainval',
                    '--cam_to_ir_label_pass', 'True')


def test_a_rerun_redoes_outputs_that_cannot_be_read(tmp_path):
    run_sample.main(ir_label_args(tmp_path))
    out = tmp_path / 'ir_label'
    made = {p.name: p.read_bytes() for p in out.glob('*.png')}
    assert len(made) == len(reference_ids('trainval'))
    first, second = sorted(made)[:2]
    truncated_copy(out / first, out / first, keep=0.7)
    (out / second).write_bytes(b'')
    run_sample.main(ir_label_args(tmp_path))
    log = (tmp_path / 'run.log').read_text()
    assert '2 existing outputs in %s cannot be read' % out in log
    assert '%d images, %d done' % (len(made), len(made) - 2) in log
    assert {p.name: p.read_bytes() for p in out.glob('*.png')} == made


# ------------------------------------------------------------------ two runs, one work space

def partial_name(target, pid, host):
    return '.%s.%d@%s.partial' % (target, pid, host)


def test_only_own_and_orphaned_partial_files_are_removed(tmp_path):
    host = socket.gethostname()
    live = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
    try:
        names = {'own': partial_name('a.npz', os.getpid(), host),
                 'dead': partial_name('b.npz', dead_pid(), host),
                 'old_format_dead': '.c.npz.%d.partial' % dead_pid(),
                 'live': partial_name('d.npz', live.pid, host),
                 'other_host': partial_name('e.npz', 1, 'elsewhere.example'),
                 'other_host_old': partial_name('f.npz', 1, 'elsewhere.example')}
        for name in names.values():
            (tmp_path / name).write_bytes(b'half')
        old = time.time() - mio.FOREIGN_PARTIAL_MAX_AGE - 60
        os.utime(tmp_path / names['other_host_old'], (old, old))
        (tmp_path / 'done.npz').write_bytes(b'kept')
        assert mio.remove_partial_files(str(tmp_path)) == 4
        assert sorted(os.listdir(tmp_path)) == sorted([names['live'], names['other_host'],
                                                       'done.npz'])
    finally:
        live.kill()
        live.wait()


def test_a_second_run_on_the_same_outputs_refuses_and_breaks_nothing(tmp_path):
    """Run A is frozen while it writes ir_label/; run B on the same work space refuses
    naming A and leaves A's temporary file; A then completes; a third run finds
    everything done and removes the file A orphaned."""
    out = tmp_path / 'ir_label'
    lock = tmp_path / '.ir_label.lock'
    first = subprocess.Popen(run_sample_cmd(*ir_label_args(tmp_path)), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (lock.is_file() and lock.read_text()) and first.poll() is None:
        assert time.time() < deadline, 'run A never claimed ir_label/'
        time.sleep(0.01)
    first.send_signal(signal.SIGSTOP)
    try:
        writing = out / partial_name('x.png', first.pid, socket.gethostname())
        writing.write_bytes(b'being written')
        second = subprocess.run(run_sample_cmd(*ir_label_args(tmp_path)), capture_output=True,
                                text=True, timeout=120)
        assert second.returncode != 0
        assert ('%s is being written by another run (process@host %d@%s'
                % (out, first.pid, socket.gethostname())) in second.stderr
        assert writing.read_bytes() == b'being written'
    finally:
        first.send_signal(signal.SIGCONT)
    assert first.wait(timeout=300) == 0
    assert not lock.exists()
    names = sorted(i + '.png' for i in reference_ids('trainval'))
    assert sorted(p.name for p in out.glob('*.png')) == names
    for name in names:
        assert mio.is_complete_file(str(out / name))
    run_sample.main(ir_label_args(tmp_path))
    assert '%d images, %d done' % (len(names), len(names)) in (tmp_path / 'run.log').read_text()
    assert not writing.exists()


def test_a_training_state_is_claimed_by_one_run(tmp_path):
    state = tmp_path / 'res50_cam.train_state.pt'
    holder = subprocess.Popen(
        [sys.executable, '-c', 'import sys, time; from misc.io import claim_output; '
         'claim_output(sys.argv[1]); print("held", flush=True); time.sleep(60)', str(state)],
        cwd=str(run_sample.__file__).rsplit(os.sep, 1)[0], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'held'
        with pytest.raises(RuntimeError, match=r'train_state\.pt is being written by another run '
                                               r'\(process@host %d@' % holder.pid):
            run_sample.main(voc_args(tmp_path, '--train_list', 'train', '--val_list', '',
                                     '--cam_batch_size', '2', '--cam_num_epoches', '1',
                                     '--cam_crop_size', '64', '--cam_resize_long', '48,96',
                                     '--train_cam_pass', 'True'))
    finally:
        holder.kill()
        holder.wait()
    assert not state.exists()


# ------------------------------------------------------------------ degenerate images

def test_a_degenerate_image_is_refused_naming_it(tmp_path):
    root = tmp_path / 'VOC2012'
    shutil.copytree(VOC_MINI, root)
    donor = reference_ids('train')[0]
    Image.new('RGB', (10000, 10), (120, 60, 30)).save(root / 'JPEGImages' / 'thin.jpg')
    shutil.copy(root / 'Annotations' / (donor + '.xml'), root / 'Annotations' / 'thin.xml')
    listed = tmp_path / 'with_thin.txt'
    listed.write_text('%s\nthin\n' % donor)
    with pytest.raises(ValueError, match=r'image .*thin\.jpg is 10000 x 10 pixels: the pipeline '
                                         r'needs a short side of at least %d pixels and an aspect '
                                         r'ratio of at most %d'
                                         % (mio.MIN_IMAGE_SIDE, mio.MAX_ASPECT_RATIO)):
        run_sample.main(['--voc12_root', str(root), '--work_space', str(tmp_path / 'ws'),
                         '--device', 'cpu', '--num_workers', '0', '--train_list', str(listed),
                         '--val_list', '', '--cam_batch_size', '2', '--cam_num_epoches', '1',
                         '--cam_crop_size', '64', '--train_cam_pass', 'True'])
    assert not (tmp_path / 'ws' / 'res50_cam.safetensors').exists()


# ------------------------------------------------------------------ pickles

def option_helps(text):
    """{option: its help, whitespace collapsed} from an argparse --help text."""
    helps, option = {}, None
    for line in text.splitlines():
        if line.startswith('  -'):
            option = line.split()[0].rstrip(',')
            helps[option] = line.split(None, 1)[1:]
        elif option and line.startswith(' ' * 8) and line.strip():
            helps[option].append(line.strip())
        else:
            option = None
    return {k: ' '.join(' '.join(v).split()) for k, v in helps.items()}


def help_text(capsys, main):
    with pytest.raises(SystemExit) as stop:
        main(['--help'])
    assert stop.value.code == 0
    return capsys.readouterr().out


def test_every_import_flag_says_importing_runs_code_from_the_file(capsys):
    from tools import gen_text_feats_cache
    flags = {}
    for main in (run_sample.main, gen_text_feats_cache.main):
        helps = option_helps(help_text(capsys, main))
        flags.update((k, v) for k, v in helps.items() if k.startswith('--import_reference'))
    assert {'--import_reference_cams', '--import_reference_npy', '--import_reference_cache'} \
        <= set(flags)
    for flag, text in flags.items():
        assert 'runs code stored in the file' in text, flag
        assert 'only import files from a trusted source' in text, flag
