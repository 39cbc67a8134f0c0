"""make_clims: resume after a kill, atomic writes, reference .npy export."""
import os
import subprocess
import time

import numpy as np
import pytest
import torch

from conftest import (REF, VOC_MINI, dead_pid, has_file_ending, kill_when, reference_ids,
                      run_sample_cmd)
from misc import io as mio
from tools.export_cams_npy import export_cams


def make_clims_cmd(work_space, weights):
    return run_sample_cmd('--voc12_root', VOC_MINI, '--work_space', work_space,
                          '--num_workers', '0', '--device', 'cpu', '--infer_list', 'trainval',
                          '--make_clims_pass', 'True', '--clims_weights_name', weights)


def cam_files(folder):
    return sorted(os.listdir(folder))


def test_killed_run_resumes_to_identical_files(tmp_path, clims_reference_weights):
    full = tmp_path / 'full'
    subprocess.run(make_clims_cmd(full, clims_reference_weights), check=True,
                   capture_output=True)
    killed = tmp_path / 'killed'
    cam_dir = killed / 'cams'
    kill_when(make_clims_cmd(killed, clims_reference_weights),
              lambda: has_file_ending(cam_dir, '.npz'), timeout=120)
    done = [n for n in cam_files(cam_dir) if n.endswith('.npz')]
    assert 1 <= len(done) < len(reference_ids('trainval')), 'the kill should land mid-run'
    for name in done:                       # whatever exists is complete
        assert mio.load_npz(str(cam_dir / name), required=('keys', 'cam', 'high_res'))
    result = subprocess.run(make_clims_cmd(killed, clims_reference_weights), check=True,
                            capture_output=True, text=True)
    assert '%d already done' % len(done) in result.stdout
    assert cam_files(cam_dir) == cam_files(full / 'cams')
    for name in cam_files(cam_dir):
        assert (cam_dir / name).read_bytes() == (full / 'cams' / name).read_bytes()


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    target = tmp_path / 'cams' / 'x.npz'
    with pytest.raises(RuntimeError):
        with mio.atomic_write(str(target)) as f:
            f.write(b'half of the data')
            raise RuntimeError('killed')
    assert not target.exists()
    assert os.listdir(tmp_path / 'cams') == []


def test_stale_partial_files_are_removed(tmp_path):
    (tmp_path / ('.a.npz.%d.partial' % dead_pid())).write_bytes(b'x')
    (tmp_path / 'b.npz').write_bytes(b'y')
    assert mio.remove_partial_files(str(tmp_path)) == 1
    assert os.listdir(tmp_path) == ['b.npz']


def test_npz_bytes_are_reproducible(tmp_path):
    arrays = dict(keys=np.arange(3), cam=np.ones((3, 2, 2), np.float32))
    mio.save_npz(str(tmp_path / 'a.npz'), **arrays)
    time.sleep(1.1)
    mio.save_npz(str(tmp_path / 'b.npz'), **arrays)
    assert (tmp_path / 'a.npz').read_bytes() == (tmp_path / 'b.npz').read_bytes()
    with pytest.raises(TypeError, match='pickle'):
        mio.npz_bytes({'bad': np.array([{}], dtype=object)})


def test_corrupt_cam_file_is_named(tmp_path):
    path = tmp_path / 'bad.npz'
    path.write_bytes(b'garbage')
    with pytest.raises(ValueError, match='bad.npz is not a readable .npz'):
        mio.load_npz(str(path))


def test_export_to_reference_npy_layout(tmp_path):
    names = reference_ids('trainval')
    written = export_cams(str(REF / 'cams'), str(tmp_path))
    assert written == len(names)
    for name in names:
        ours = np.load(tmp_path / (name + '.npy'), allow_pickle=True).item()
        ref = np.load(REF / 'cams_npy' / (name + '.npy'), allow_pickle=True).item()
        assert set(ours) == set(ref) == {'keys', 'cam', 'high_res'}
        for key in ('keys', 'cam'):
            assert isinstance(ours[key], torch.Tensor) and ours[key].dtype == ref[key].dtype
        assert isinstance(ours['high_res'], np.ndarray)
        np.testing.assert_array_equal(ours['keys'].numpy(), ref['keys'].numpy())
        np.testing.assert_allclose(ours['cam'].numpy(), ref['cam'].numpy(), atol=5e-5)
        np.testing.assert_allclose(ours['high_res'], ref['high_res'], atol=5e-5)
    assert export_cams(str(REF / 'cams'), str(tmp_path)) == 0
