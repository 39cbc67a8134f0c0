"""tools/compare_runs.py on small synthetic run folders, and the deterministic
safetensors writes it relies on (misc.io.safetensors_bytes)."""
import hashlib
import json
import subprocess
import sys

import torch
from safetensors.torch import save

from conftest import REPO
from misc.io import safetensors_bytes
from tools.compare_runs import compare_runs, main


def write_run(root, *, miou=0.5, png=b'\x89PNG-a', weight=1.0, seconds=1.0, meta_order=(0, 1),
              log='12:00:01 done'):
    """A run folder as the demo leaves it: JSON with the run's own paths and a timing field,
    weights with metadata naming a file of the run, a PNG, a log."""
    ws = root / 'work_space'
    (ws / 'cams').mkdir(parents=True)
    (ws / 'cams' / 'a.png').write_bytes(png)
    (ws / 'eval_cam.json').write_text(json.dumps({
        'miou': miou, 'cam_out_dir': str(ws / 'cams'), 'seconds': seconds,
        'sweep': [{'threshold': 0.1, 'elapsed_time': seconds}]}))
    items = [('clip_name', str(root / 'tiny_clip.safetensors')), ('kind', 'fg')]
    metadata = dict(items[i] for i in meta_order)
    cache = save({'w': torch.full((2, 3), weight)}, metadata)
    (ws / 'cache.safetensors').write_bytes(cache)
    (ws / 'cache.safetensors.provenance.json').write_text(json.dumps(
        {'stage': 'cache', 'sha256': hashlib.sha256(cache).hexdigest()}))
    (ws / 'run.log').write_text(log)
    (ws / '.cams.lock').write_text('%d@host since %s' % (len(log), log))
    return root


def test_runs_differing_only_in_paths_timing_and_logs_are_identical(tmp_path, capsys):
    a = write_run(tmp_path / 'a')
    b = write_run(tmp_path / 'b', seconds=7.5, meta_order=(1, 0), log='13:14:15 done')
    result = compare_runs(str(a), str(b))
    assert result['identical'] == ['work_space/cache.safetensors',
                                   'work_space/cache.safetensors.provenance.json',
                                   'work_space/cams/a.png', 'work_space/eval_cam.json']
    assert result['different'] == [] and result['only_a'] == result['only_b'] == []
    assert result['skipped'] == ['work_space/.cams.lock', 'work_space/run.log']
    assert main([str(a), str(b)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == 'IDENTICAL' and out[-2].startswith('4 identical, 0 different')


def test_each_kind_of_difference_is_reported(tmp_path, capsys):
    a = write_run(tmp_path / 'a')
    b = write_run(tmp_path / 'b', miou=0.5000001, png=b'\x89PNG-b', weight=1.0 + 1e-7)
    (b / 'work_space' / 'extra.txt').write_text('x')
    result = compare_runs(str(a), str(b))
    assert result['different'] == [         # the record's digest names the file, reported once
        ('work_space/cache.safetensors', '1 of 1 tensors differ (first: w)'),
        ('work_space/cams/a.png', 'bytes differ from offset 5'),
        ('work_space/eval_cam.json', 'JSON values differ')]
    assert result['only_b'] == ['work_space/extra.txt']
    assert result['identical'] == ['work_space/cache.safetensors.provenance.json']
    assert main([str(a), str(b)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == 'DIFFERENT'
    assert 'differs: work_space/cams/a.png (bytes differ from offset 5)' in out


def test_a_path_outside_the_run_folder_is_a_difference(tmp_path):
    a = write_run(tmp_path / 'a')
    b = write_run(tmp_path / 'b')
    meta = {'clip_name': '/elsewhere/tiny_clip.safetensors', 'kind': 'fg'}
    (b / 'work_space' / 'cache.safetensors').write_bytes(save({'w': torch.ones(2, 3)}, meta))
    assert compare_runs(str(a), str(b))['different'] == [
        ('work_space/cache.safetensors', 'metadata differs: clip_name'),
        ('work_space/cache.safetensors.provenance.json', 'JSON values differ')]


WRITE = """
import sys, torch
from misc.io import safetensors_bytes
meta = {k: k.upper() for k in ('arch', 'msc', 'n_classes', 'class_names', 'z', 'b')}
sys.stdout.buffer.write(safetensors_bytes({'w': torch.arange(6.0)}, meta))
"""


def test_safetensors_with_metadata_are_the_same_bytes_in_every_process():
    """The safetensors writer orders metadata by a per-process hash; ours sorts it."""
    outputs = [subprocess.run([sys.executable, '-c', WRITE], cwd=REPO, capture_output=True,
                              check=True).stdout for _ in range(3)]
    assert outputs[0] == outputs[1] == outputs[2]
    size = int.from_bytes(outputs[0][:8], 'little')
    header = json.loads(outputs[0][8:8 + size])
    assert list(header['__metadata__']) == ['arch', 'b', 'class_names', 'msc', 'n_classes', 'z']
    assert size % 8 == 0
    meta = {'b': 'B', 'a': 'A'}
    plain = save({'w': torch.arange(6.0)}, meta)
    assert len(safetensors_bytes({'w': torch.arange(6.0)}, meta)) == len(plain)
