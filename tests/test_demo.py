"""The demo end to end with tiny settings, and the report table."""
import json
import math

import run_demo
from misc.report import iou_table


def test_demo_runs_end_to_end(tmp_path, capsys):
    run_demo.main(['--out', str(tmp_path), '--n_images', '15', '--epochs', '1', '--crop', '64',
                   '--device', 'cpu'])
    out = capsys.readouterr().out
    assert 'CAM mIoU' in out and 'Demo finished' in out
    result = json.loads((tmp_path / 'work_space' / 'eval_cam.json').read_text())
    assert 0.0 <= result['miou'] <= 1.0 and len(result['sweep']) == 55
    panels = sorted((tmp_path / 'overlays').glob('*.png'))
    assert len(panels) == 4


def test_iou_table_marks_and_skips_absent_classes():
    table = iou_table(['background', 'cat', 'dog'], [0.5, math.nan, 0.25], 0.375)
    assert '-' in table.splitlines()[2] and '37.50' in table.splitlines()[-1]
    short = iou_table(['background', 'cat', 'dog'], [0.5, None, 0.25], 0.375, skip_absent=True)
    assert 'cat' not in short and 'dog' in short
